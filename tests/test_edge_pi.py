"""The edge runner on an emulated 64-bit Raspberry Pi, against LiteRT on x86, as a user runs it.

Each test starts from a plain copy of the repository (its tracked files; nothing installed from
it) and the one requirements file it names: the command the runner's `--help` and the README
print, with ai-edge-litert (`requirements-edge.txt`), and every shipped model and variant with
tflite-runtime 2.14 (`requirements-edge-tflite-runtime.txt`), the `.tflite` files travelling
without their sidecar JSON. Runs where `../shared/piemu` and its arm64 root filesystem exist
(root, once per machine: `bash ../shared/piemu/setup_rootfs.sh`); elsewhere it skips and says why.
"""

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet.runtime.imageio import image_files
from unet.runtime.segmenter import Segmenter, SegmentOptions

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO.parent / "shared" / "piemu" / "run_in_pi.sh"
ROOTFS = Path(os.environ.get("PIEMU_ROOTFS", Path(os.environ.get("TMPDIR", "/tmp")) / "piemu" / "rootfs"))
VENV = "/opt/tflrt"
LITERT_VENV = "/opt/litert"
MODELS = ("nuclei", "brain-tissue", "shapes")
# float32 on tflite-runtime agreed on 100% of pixels in every run; the quantised files are the ones
# whose kernels differ between architectures.
VARIANTS = ("int8", "portable")
MIN_AGREEMENT = 0.995


def emulator_missing() -> str | None:
    if not RUNNER.is_file():
        return f"no Pi emulator: {RUNNER} is absent"
    if os.geteuid() != 0:
        return "the Pi emulator (chroot, binfmt) needs root"
    if not all((ROOTFS / venv.lstrip("/") / "bin" / "python").exists() for venv in (VENV, LITERT_VENV)):
        return f"no emulated Pi root filesystem with {VENV} at {ROOTFS}: run bash {RUNNER.parent}/setup_rootfs.sh"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(emulator_missing() is not None,
                                                   reason=emulator_missing() or "")]


def plain_copy(work: Path) -> None:
    """The repository's tracked files, as `git clone` or a download would give them."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in tracked.stdout.split("\0"):
        if name and (REPO / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, work / name)


def run_in_pi(work: Path, commands: list[str], venv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(RUNNER), str(work), " && ".join(commands)], capture_output=True, text=True,
        env={**os.environ, "PIEMU_VENV": venv, "PIEMU_ROOTFS": str(ROOTFS)}, timeout=1800,
    )


def test_the_documented_command_segments_an_example_on_a_plain_copy(tmp_path):
    from unet.segment import COMMAND

    assert COMMAND in (REPO / "README.md").read_text()
    work = tmp_path / "pi"
    plain_copy(work)
    # The names the command uses: a model file beside the copy, a folder of photos.
    shutil.copy(REPO / "assets" / "nuclei" / "nuclei.int8.tflite", work / "nuclei.int8.tflite")
    (work / "photos").mkdir()
    example = sorted((REPO / "assets" / "examples").glob("nuclei-*.png"))[0]
    shutil.copy(example, work / "photos")
    completed = run_in_pi(work, ["pip install -q -r requirements-edge.txt", COMMAND], LITERT_VENV)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "XNNPACK" in completed.stdout + completed.stderr
    segmenter = Segmenter.from_path(REPO / "assets" / "nuclei" / "nuclei.int8.tflite")
    expected = segmenter.segment(example, **SegmentOptions.default_for(segmenter.metadata).to_kwargs())
    found = np.asarray(Image.open(work / "results" / f"{example.stem}_mask.png"))
    agreement = float((found == expected.segmentation.class_mask).mean())
    print(f"{COMMAND!r} on emulated arm64 (ai-edge-litert): {agreement:.4%} of pixels as on x86")
    assert agreement >= MIN_AGREEMENT


def test_tflite_runtime_on_emulated_arm64_agrees_with_litert_on_x86(tmp_path):
    work = tmp_path / "pi"
    plain_copy(work)
    commands = ["pip install -q -r requirements-edge-tflite-runtime.txt",
                "python -c 'import tflite_runtime, numpy; print(\"tflite-runtime\", tflite_runtime.__version__, "
                "\"numpy\", numpy.__version__)'"]
    for name in MODELS:
        # The .tflite files travel alone: each reads its metadata from inside itself.
        (work / "models" / name).mkdir(parents=True)
        for variant in VARIANTS:
            shutil.copy(REPO / "assets" / name / f"{name}.{variant}.tflite", work / "models" / name)
            commands.append(f"python -m unet.segment models/{name}/{name}.{variant}.tflite "
                            f"assets/examples/{name}-*.png --out out/{name}-{variant} --threads 2")
    commands.append("python -m unet.segment models/nuclei/nuclei.int8.tflite assets/examples/nuclei-*.png "
                    "--out out/nuclei-int8-flips --threads 2 --flips")
    completed = run_in_pi(work, commands, VENV)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "tflite-runtime 2.14.0" in completed.stdout
    runs = [(name, variant, False, f"{name}-{variant}") for name in MODELS for variant in VARIANTS]
    runs.append(("nuclei", "int8", True, "nuclei-int8-flips"))
    for name, variant, flips, out in runs:
        segmenter = Segmenter.from_path(REPO / "assets" / name / f"{name}.{variant}.tflite")
        edge_options = dataclasses.replace(SegmentOptions.default_for(segmenter.metadata), flips=flips).to_kwargs()
        agreed = total = 0
        for image_path in image_files(work / "assets" / "examples"):
            if not image_path.name.startswith(f"{name}-"):
                continue
            expected = segmenter.segment(image_path, **edge_options).segmentation.class_mask
            found = np.asarray(Image.open(work / "out" / out / f"{image_path.stem}_mask.png"))
            agreed += int((found == expected).sum())
            total += expected.size
        agreement = agreed / total
        print(f"{name} {variant}{' with --flips' if flips else ''}: tflite-runtime 2.14 on emulated arm64 "
              f"agrees with ai-edge-litert on x86 on {agreement:.4%} of pixels")
        assert agreement >= MIN_AGREEMENT
