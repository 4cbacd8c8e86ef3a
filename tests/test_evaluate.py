"""`python -m unet.evaluate` on a shipped model: scores, and results written where the user is."""

import json
from pathlib import Path

from folders import file_digests

from unet.data.synthetic import SHAPE_CLASSES, SyntheticSpec, write_folder
from unet.evaluate import main as evaluate_main

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_evaluating_a_shipped_model_writes_into_the_working_folder_not_assets(tmp_path, monkeypatch, capsys):
    data = write_folder(tmp_path / "data", SyntheticSpec(count=3, seed=555, size=(96, 96), channels=3,
                                                          shapes=SHAPE_CLASSES))
    before = file_digests(ASSETS / "shapes")
    monkeypatch.chdir(tmp_path)
    assert evaluate_main([str(ASSETS / "shapes" / "shapes.int8.tflite"), "--data", str(data)]) == 0
    result = json.loads((tmp_path / "shapes.int8.tflite.evaluation.json").read_text())
    assert result["images"] == 3 and result["model"] == "shapes.int8.tflite"
    assert result["mean_iou"] > 0.5
    assert file_digests(ASSETS / "shapes") == before
    assert "wrote shapes.int8.tflite.evaluation.json" in capsys.readouterr().out
