"""The edge runner on an emulated 64-bit Raspberry Pi with tflite-runtime 2.14, against LiteRT on x86.

Runs where `../shared/piemu` and its arm64 root filesystem exist (root, once per machine:
`bash ../shared/piemu/setup_rootfs.sh`); elsewhere it skips and says why. The chroot installs
exactly `requirements-edge-tflite-runtime.txt` into its tflite-runtime venv.
"""

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
MODELS = ("nuclei", "brain-tissue", "shapes")
VARIANTS = ("int8", "float32", "portable")
MIN_AGREEMENT = 0.995


def emulator_missing() -> str | None:
    if not RUNNER.is_file():
        return f"no Pi emulator: {RUNNER} is absent"
    if os.geteuid() != 0:
        return "the Pi emulator (chroot, binfmt) needs root"
    if not (ROOTFS / VENV.lstrip("/") / "bin" / "python").exists():
        return f"no emulated Pi root filesystem with {VENV} at {ROOTFS}: run bash {RUNNER.parent}/setup_rootfs.sh"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(emulator_missing() is not None,
                                                   reason=emulator_missing() or "")]


def test_tflite_runtime_on_emulated_arm64_agrees_with_litert_on_x86(tmp_path):
    work = tmp_path / "pi"
    for package in ("unet", "export"):
        shutil.copytree(REPO / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "requirements-edge-tflite-runtime.txt", work)
    shutil.copytree(REPO / "assets" / "examples", work / "examples", ignore=shutil.ignore_patterns("*.md"))
    commands = ["pip install -q -r requirements-edge-tflite-runtime.txt",
                "python -c 'import tflite_runtime, numpy; print(\"tflite-runtime\", tflite_runtime.__version__, "
                "\"numpy\", numpy.__version__)'"]
    for name in MODELS:
        # The .tflite files travel alone: each reads its metadata from inside itself.
        (work / "models" / name).mkdir(parents=True)
        for variant in VARIANTS:
            shutil.copy(REPO / "assets" / name / f"{name}.{variant}.tflite", work / "models" / name)
            commands.append(f"python -m export.segment_edge models/{name}/{name}.{variant}.tflite "
                            f"examples/{name}-*.png --out out/{name}-{variant} --threads 2")
    completed = subprocess.run(
        ["bash", str(RUNNER), str(work), " && ".join(commands)], capture_output=True, text=True,
        env={**os.environ, "PIEMU_VENV": VENV, "PIEMU_ROOTFS": str(ROOTFS)}, timeout=1800,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "tflite-runtime 2.14.0" in completed.stdout
    for name in MODELS:
        for variant in VARIANTS:
            segmenter = Segmenter.from_path(REPO / "assets" / name / f"{name}.{variant}.tflite")
            edge_defaults = SegmentOptions.default_for(segmenter.metadata).to_kwargs()
            agreed = total = 0
            for image_path in image_files(work / "examples"):
                if not image_path.name.startswith(f"{name}-"):
                    continue
                expected = segmenter.segment(image_path, **edge_defaults).segmentation.class_mask
                found = np.asarray(Image.open(work / "out" / f"{name}-{variant}" / f"{image_path.stem}_mask.png"))
                agreed += int((found == expected).sum())
                total += expected.size
            agreement = agreed / total
            print(f"{name} {variant}: tflite-runtime 2.14 on emulated arm64 agrees with ai-edge-litert "
                  f"on x86 on {agreement:.4%} of pixels")
            assert agreement >= MIN_AGREEMENT
