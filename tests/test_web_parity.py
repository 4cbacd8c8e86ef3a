"""The browser's preprocessing (web/preprocess.js) against the Python runtime's, with node's test runner.

Python writes each case (raw image bytes, metadata, and the tensor `preprocess` makes) into a
folder; `node --test web/test/` reads them and checks its own tensor within 1e-6 (measured: one
float32 step, 6e-8, at most).
"""

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from unet.runtime.metadata import ModelMetadata, Normalisation
from unet.runtime.preprocess import preprocess

REPO = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")

CASES = {
    # name: (dtype, (H, W, C) of the image, model input (h, w), model channels, normalisation)
    "uint8-gray-percentile-down": ("uint8", (300, 260, 1), (128, 128), 1, Normalisation("percentile", 1.0, 99.8)),
    "uint16-gray-percentile-up": ("uint16", (90, 70, 1), (128, 96), 1, Normalisation("percentile", 2.0, 98.0)),
    "uint8-rgb-unit-to-gray": ("uint8", (150, 200, 3), (96, 96), 1, Normalisation("unit")),
    "uint8-rgb-percentile-rgb": ("uint8", (160, 160, 3), (128, 128), 3, Normalisation("percentile", 1.0, 99.8)),
    "uint16-gray-unit-to-rgb": ("uint16", (64, 80, 1), (64, 80), 3, Normalisation("unit")),
    "uint8-gray-flat": ("uint8", (40, 40, 1), (32, 32), 1, Normalisation("percentile", 1.0, 99.8)),
}


def write_case(folder: Path, name: str, dtype: str, shape, input_size, channels: int, normalisation) -> None:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    top = 255 if dtype == "uint8" else 65535
    if name.endswith("flat"):
        image = np.full(shape, 77, dtype=dtype)
    else:
        smooth = rng.random((shape[0] // 10 + 2, shape[1] // 10 + 2, shape[2]))
        rows = np.linspace(0, smooth.shape[0] - 1, shape[0]).astype(int)
        cols = np.linspace(0, smooth.shape[1] - 1, shape[1]).astype(int)
        image = (smooth[rows][:, cols] * top * 0.8 + rng.random(shape) * top * 0.2).astype(dtype)
    metadata = ModelMetadata(input_size=input_size, channels=channels, class_names=["background", "object"],
                             normalisation=normalisation)
    pixels = image[..., 0] if shape[2] == 1 else image
    tensor, _ = preprocess(pixels, metadata)
    (folder / f"{name}.image").write_bytes(np.ascontiguousarray(image).tobytes())
    (folder / f"{name}.expected").write_bytes(tensor.astype(np.float32).tobytes())
    (folder / f"{name}.json").write_text(json.dumps({
        "image": f"{name}.image", "dtype": dtype, "height": shape[0], "width": shape[1], "channels": shape[2],
        "metadata": {"input_size": list(input_size), "channels": channels,
                     "normalisation": {"method": normalisation.method, "low": normalisation.low,
                                       "high": normalisation.high}},
        "expected": f"{name}.expected", "expected_shape": list(tensor.shape),
    }))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_browser_preprocessing_matches_python_for_every_normalisation(tmp_path):
    for name, case in CASES.items():
        write_case(tmp_path, name, *case)
    completed = subprocess.run([NODE, "--test", str(REPO / "web" / "test")], capture_output=True, text=True,
                               env={"WEB_FIXTURES": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert f"# pass {len(CASES) + 1}" in completed.stdout
