"""Must show: every CLI answers bad input with one clear `error:` line, a non-zero exit and no
traceback, and leaves the models and reports already in the folder exactly as they were."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from folders import file_digests

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture
def model_folder(trained_and_exported, tmp_path):
    folder, _, _ = trained_and_exported
    copy = tmp_path / "discs"
    shutil.copytree(folder, copy)
    (copy / "corrupt.keras").write_bytes(b"PK\x03\x04 not really a zip")
    (copy / "corrupt.tflite").write_bytes(b"\x00" * 64)
    (copy / "corrupt.json").write_text((copy / "discs.json").read_text())
    mismatched = json.loads((copy / "discs.json").read_text())
    mismatched["class_names"] = ["background", "a", "b"]
    mismatched["class_colours"] = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    shutil.copy(copy / "discs.float32.tflite", copy / "mismatched.tflite")
    (copy / "mismatched.json").write_text(json.dumps(mismatched))
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("L", (40, 30), 90).save(images / "grey.png")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    (tmp_path / "unmatched" / "images").mkdir(parents=True)
    (tmp_path / "unmatched" / "masks").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "unmatched" / "images" / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "unmatched" / "masks" / "b.png")
    return copy


CASES = {
    "export: missing model": (["export/to_tflite.py", "--model", "{m}/none.keras"], "model file not found"),
    "export: corrupt model": (["export/to_tflite.py", "--model", "{m}/corrupt.keras"], "is not a .keras model"),
    "export: calibration without images": (
        ["export/to_tflite.py", "--model", "{m}/discs.keras", "--calib", "{t}/empty/images", "--quant", "int8"],
        "has no usable images"),
    "evaluate: corrupt model": (["-m", "unet.evaluate", "{m}/corrupt.keras", "--data", "{t}/unmatched"],
                                "is not a .keras model"),
    "evaluate: unmatched dataset": (["-m", "unet.evaluate", "{m}/discs.keras", "--data", "{t}/unmatched"],
                                    "a.png"),
    "train: empty dataset": (["-m", "unet.train", "--data", "{t}/empty", "--out", "{m}"], "no image files"),
    "train: unmatched dataset": (["-m", "unet.train", "--data", "{t}/unmatched", "--out", "{m}"], "b.png"),
    "edge: corrupt tflite": (["-m", "unet.segment", "{m}/corrupt.tflite", "{t}/images", "--out", "{m}"],
                             "cannot load TFLite model"),
    "edge: output does not fit metadata": (
        ["-m", "unet.segment", "{m}/mismatched.tflite", "{t}/images", "--out", "{t}/out"], "3 classes"),
    "edge: no images": (["-m", "unet.segment", "{m}/discs.int8.tflite", "{t}/empty/images", "--out", "{m}"],
                        "no images found"),
}


@pytest.mark.slow
def test_every_cli_refuses_bad_input_in_one_line_and_keeps_existing_files(model_folder):
    before = file_digests(model_folder)
    messages = {}
    for case, (arguments, fragment) in CASES.items():
        arguments = [a.format(m=model_folder, t=model_folder.parent) for a in arguments]
        command = [sys.executable, *(str(REPO / a) if a.endswith(".py") else a for a in arguments)]
        completed = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        assert completed.returncode == 2, (case, completed.stderr[-2000:])
        assert "Traceback" not in completed.stderr, case
        # One `error:` line, optionally followed by an indented list of the offending files.
        starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
        assert len(starts) == 1, (case, lines[-5:])
        block = lines[starts[0]:]
        assert all(line.startswith(" ") for line in block[1:]), (case, block)
        assert fragment in "\n".join(block), (case, block)
        messages[case] = block[0][:160]
        assert file_digests(model_folder) == before, case
    print("\n".join(f"{case}: {message}" for case, message in messages.items()))
