"""The layers hold: everything outside unet/training/ imports without TensorFlow, and no import cycles.

The Raspberry Pi, the edge runner and the app's LiteRT path run where TensorFlow is not
installed. The check walks the package, so a new module is covered without editing a list.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TENSORFLOW_LAYER = ("unet", "training")

IMPORT_WITHOUT_TENSORFLOW = """
import importlib, importlib.abc, sys

class BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is not importable here")
        return None

sys.meta_path.insert(0, BlockTensorFlow())
failures = []
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except Exception as error:
        failures.append(f"{module}: {type(error).__name__}: {error}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tensorflow_free_modules(root: Path) -> list[str]:
    """Every module under unet/ but unet/training/: the folder line is the TensorFlow line."""
    return [module_name(root, path) for path in sorted((root / "unet").rglob("*.py"))
            if path.relative_to(root).parts[:2] != TENSORFLOW_LAYER]


def modules_needing_tensorflow(root: Path) -> str:
    """Import each TensorFlow-free module of the tree at `root` with TensorFlow blocked; the failures."""
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_TENSORFLOW, *tensorflow_free_modules(root)],
        cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"},
        capture_output=True, text=True, timeout=300,
    )
    return completed.stdout + completed.stderr if completed.returncode else ""


def test_every_module_outside_the_training_layer_imports_without_tensorflow():
    modules = tensorflow_free_modules(REPO)
    assert "unet.runtime.backends" in modules and "unet.data.splits" in modules
    assert not any(name.startswith("unet.training") for name in modules)
    assert modules_needing_tensorflow(REPO) == ""


def test_a_tensorflow_import_planted_in_the_runtime_is_caught(tmp_path):
    for package in ("unet", "export"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "unet" / "runtime" / "planted.py").write_text("import tensorflow\n")
    failures = modules_needing_tensorflow(tmp_path)
    assert failures.splitlines() == ["unet.runtime.planted: ImportError: tensorflow is not importable here"]


def project_imports(path: Path, root: Path) -> set[str]:
    """Project modules that a file imports anywhere, at the top or inside a function."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in imported
            if name.split(".")[0] in ("unet", "export", "app", "bench")
            and ((root / Path(*name.split("."))).with_suffix(".py").is_file()
                 or (root / Path(*name.split(".")) / "__init__.py").is_file())}


def test_no_import_cycle_among_project_modules():
    files = [*(REPO / "unet").rglob("*.py"), *(REPO / "export").rglob("*.py"), *(REPO / "bench").rglob("*.py"),
             REPO / "app.py"]
    graph = {module_name(REPO, path): project_imports(path, REPO) for path in files}
    # A package's __init__ imports nothing here, so "a.b" importing "a" is no cycle.
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) > 40
    assert cycles == []
