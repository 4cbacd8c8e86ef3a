"""Export to TFLite and the edge runner, on a small model trained here on synthetic data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]


from export.to_tflite import main as export_main
from unet.runtime.backends import LiteRTBackend
from unet.runtime.segmenter import Segmenter


@pytest.fixture
def exported(trained_and_exported):
    return trained_and_exported


@pytest.mark.slow
def test_export_writes_every_variant_with_int8_io_and_small_int8(exported):
    out, report, _ = exported
    for variant in ("float32", "float16", "int8"):
        assert (out / f"discs.{variant}.tflite").stat().st_size > 0
    int8 = LiteRTBackend(out / "discs.int8.tflite")
    assert int8.input_quantisation.dtype == "int8" and int8.output_quantisation.dtype == "int8"
    sizes = {v: (out / f"discs.{v}.tflite").stat().st_size for v in ("float32", "int8")}
    print(f"float32 {sizes['float32']} bytes, int8 {sizes['int8']} bytes, "
          f"ratio {sizes['int8'] / sizes['float32']:.3f}")
    assert sizes["int8"] <= 0.30 * sizes["float32"]


@pytest.mark.slow
def test_browser_variant_is_the_int8_model_with_float_io_and_batch_one(exported):
    """LiteRT.js has no int8 tensors: the browser's file takes and gives float32, computing in int8."""
    out, report, _ = exported
    browser = LiteRTBackend(out / "discs.int8-float-io.tflite")
    int8 = LiteRTBackend(out / "discs.int8.tflite")
    assert browser.input_shape[0] == 1
    assert browser.input_quantisation.dtype == "float32" and browser.output_quantisation.dtype == "float32"
    tensor = np.random.default_rng(0).random(int8.input_shape, dtype=np.float32)
    # The same calibration gives the same scales: outputs differ by at most one int8 output step.
    assert np.abs(browser.run(tensor) - int8.run(tensor)).max() <= int8.output_quantisation.scale + 1e-6
    metadata = json.loads((out / "discs.json").read_text())
    assert metadata["variants"]["int8-float-io"]["input"]["dtype"] == "float32"
    assert report.variants["int8-float-io"]["agreement_with_keras"]["pixel_agreement"] >= 0.95


@pytest.mark.slow
def test_metadata_carries_scale_and_zero_point_read_back_from_the_model(exported):
    out, _, _ = exported
    metadata = json.loads((out / "discs.json").read_text())
    int8 = LiteRTBackend(out / "discs.int8.tflite")
    recorded = metadata["variants"]["int8"]["input"]
    assert recorded["scale"] == pytest.approx(int8.input_quantisation.scale)
    assert recorded["zero_point"] == int8.input_quantisation.zero_point
    assert metadata["variants"]["float32"]["input"]["dtype"] == "float32"


@pytest.mark.slow
def test_report_has_every_field_for_every_variant(exported):
    out, report, failures = exported
    on_disk = json.loads((out / "discs.export.json").read_text())
    assert on_disk["variants"].keys() == {"float32", "float16", "int8", "int8-float-io"}
    for variant, row in on_disk["variants"].items():
        assert row["size_bytes"] > 0 and row["size_ratio_to_float32"] > 0
        assert set(row["accuracy"]) >= {"mean_iou", "per_class", "foreground_iou"}
        assert set(row["accuracy"]["per_class"]["disc"]) == {"iou", "dice", "support"}
        assert row["agreement_with_keras"]["pixel_agreement"] >= 0.95
        for threads in ("", "-1thread"):
            latency = on_disk["latency"][f"litert-{variant}{threads}"]
            assert latency["p50_ms"] > 0 and latency["runs"] == 3
    assert on_disk["worst_layers"] and "rmse_over_scale" in on_disk["worst_layers"][0]
    markdown = (out / "discs.export.md").read_text()
    assert "| LiteRT int8 |" in markdown and "Worst layers" in markdown
    int8, keras = on_disk["variants"]["int8"], on_disk["keras"]
    print(f"Keras mean IoU {keras['accuracy']['mean_iou']:.4f}, int8 {int8['accuracy']['mean_iou']:.4f}, "
          f"agreement {int8['agreement_with_keras']['pixel_agreement']:.4f}")
    assert not failures
    assert keras["accuracy"]["mean_iou"] - int8["accuracy"]["mean_iou"] <= 0.02
    assert int8["agreement_with_keras"]["pixel_agreement"] >= 0.98


@pytest.mark.slow
def test_iou_drop_gate_fails_the_export_but_still_writes_the_report(exported, capsys):
    out, _, _ = exported
    report_path = out / "discs.export.json"
    report_path.unlink()
    code = export_main(["--model", str(out / "discs.keras"), "--quant", "int8",
                        "--max-iou-drop", "-1", "--latency-runs", "1", "--worst-layers", "0",
                        "--calib-n", "8", "--eval-n", "4"])
    assert code == 1
    assert "FAILED" in capsys.readouterr().err
    assert json.loads(report_path.read_text())["checks"]["failures"]


BLOCK_TENSORFLOW = "raise ImportError('tensorflow is not installed on this Pi')\n"


@pytest.mark.slow
def test_edge_runner_works_without_tensorflow_and_matches_the_app_runtime(exported, tmp_path):
    out, _, _ = exported
    blocker = tmp_path / "blocker"
    (blocker / "tensorflow").mkdir(parents=True)
    (blocker / "tensorflow" / "__init__.py").write_text(BLOCK_TENSORFLOW)
    (blocker / "keras").mkdir()
    (blocker / "keras" / "__init__.py").write_text(BLOCK_TENSORFLOW)
    from unet.data.synthetic import SyntheticSpec, make_dataset

    images = tmp_path / "images"
    images.mkdir()
    for index, sample in enumerate(make_dataset(SyntheticSpec(count=3, seed=99, size=(90, 70)))):
        Image.fromarray(sample.image).save(images / f"img{index}.png")
    model = out / "discs.int8.tflite"
    results = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "unet.segment", str(model), str(images),
         "--out", str(results), "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(blocker)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "p50" in completed.stdout and "p95" in completed.stdout
    segmenter = Segmenter.from_path(model, num_threads=1)
    for index in range(3):
        edge_mask = np.asarray(Image.open(results / f"img{index}_mask.png"))
        app_mask = segmenter.segment(images / f"img{index}.png").segmentation.class_mask
        np.testing.assert_array_equal(edge_mask, app_mask)
        overlay = Image.open(results / f"img{index}_overlay.png")
        assert overlay.size == (70, 90) and overlay.mode == "RGB"


def test_edge_runner_reports_a_missing_model_in_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "unet.segment", str(tmp_path / "none.tflite"),
         str(tmp_path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert completed.returncode == 2
    assert "error:" in completed.stderr and "Traceback" not in completed.stderr


def keras_io_unet(img_size=(64, 64), num_classes=3, interpolation="nearest"):
    """The keras-io U-Net-like model, small: 16 filters at the first level instead of 32."""
    from bench.export_kit import keras_io_unet as published

    return published(img_size, num_classes, interpolation, filters=(16, 32, 64))


@pytest.mark.slow
def test_foreign_keras_io_model_exports_with_calibration_folder_and_float_layers(tmp_path):
    model = keras_io_unet()
    model.save(tmp_path / "pets.keras")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(calib / f"{index}.jpg")
    (calib / "notes.txt").write_text("not an image")
    code = export_main(["--model", str(tmp_path / "pets.keras"), "--calib", str(calib),
                        "--quant", "float32,int8", "--float-layers", "head", "--max-iou-drop", "1",
                        "--min-pixel-agreement", "0",
                        "--latency-runs", "2", "--worst-layers", "3"])
    assert code == 0
    metadata = json.loads((tmp_path / "pets.json").read_text())
    assert metadata["input_size"] == [64, 64] and metadata["channels"] == 3
    assert metadata["class_names"] == ["class0", "class1", "class2"]
    from export.report import ExportReport

    report = ExportReport.from_dict(json.loads((tmp_path / "pets.export.json").read_text()))
    assert report.held_out["labelled"] is False
    assert 0 <= report.variants["int8"]["agreement_with_keras"]["pixel_agreement"] <= 1
    # Selective quantisation keeps float32 I/O (the debugger's model); the weights are int8.
    backend = LiteRTBackend(tmp_path / "pets.int8.tflite")
    assert backend.input_quantisation.dtype == report.variants["int8"]["input"]["dtype"] == "float32"
    sizes = {v: report.variants[v]["size_bytes"] for v in ("float32", "int8")}
    assert sizes["int8"] < 0.5 * sizes["float32"]


def test_export_refuses_a_calibration_folder_without_images(tmp_path, capsys):
    model = keras_io_unet((32, 32), 2)
    model.save(tmp_path / "m.keras")
    (tmp_path / "empty").mkdir()
    from unet.cli import run_cli

    code = run_cli(lambda: export_main(["--model", str(tmp_path / "m.keras"), "--calib",
                                        str(tmp_path / "empty"), "--quant", "int8"]))
    assert code == 2
    assert "has no usable images" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tflite"))


def _shipped_nuclei_card_inputs():
    """The shipped nuclei model's folder, metadata and export report, as `render_model_card` takes them."""
    from unet.runtime.metadata import load_metadata

    folder = Path(__file__).resolve().parents[1] / "assets" / "nuclei"
    return folder, load_metadata(folder / "nuclei.json"), json.loads((folder / "nuclei.export.json").read_text())


def test_the_model_card_says_when_a_model_was_trained_with_the_border_map_from_other_weights_and_theirs():
    import dataclasses

    from export.model_card import render_model_card

    folder, metadata, report = _shipped_nuclei_card_inputs()
    training = {**metadata.training, "border_weight": {"w0": 10.0, "sigma_px": 5.0},
                "command": "python -m unet.train --out runs/c",
                "initial_weights": {"path": "runs/b/nuclei.keras", "sha256": "ab" * 32,
                                    "command": "python -m unet.train --out runs/b",
                                    "initial_weights": {"path": "runs/a/nuclei.keras", "sha256": "cd" * 32,
                                                        "command": "python -m unet.train --out runs/a"}}}
    card = render_model_card(dataclasses.replace(metadata, training=training), report, "x", folder)
    assert "border map: w0 10, sigma 5 px" in card
    assert "Started from the weights of `runs/b/nuclei.keras` (SHA-256 abababababab...)" in card
    assert "That run started from the weights of `runs/a/nuclei.keras` (SHA-256 cdcdcdcdcdcd...)" in card
    reproduce = card.split("## Reproduce")[1]
    assert reproduce.index("--out runs/a") < reproduce.index("--out runs/b") < reproduce.index("--out runs/c")
    assert "border map" not in render_model_card(metadata, report, "x", folder)


def test_the_model_card_copies_a_model_exported_in_its_run_folder_into_the_models_folder():
    from export.model_card import render_model_card

    folder, metadata, report = _shipped_nuclei_card_inputs()
    exported_elsewhere = render_model_card(metadata, report, "python export/to_tflite.py --model runs/c/nuclei.keras",
                                           folder).split("## Reproduce")[1]
    assert exported_elsewhere.index("--model runs/c/nuclei.keras") < exported_elsewhere.index(
        "cp runs/c/* assets/nuclei/") < exported_elsewhere.index("python -m bench.generalisation")
    exported_here = render_model_card(metadata, report, f"python export/to_tflite.py --model {folder}/nuclei.keras",
                                      folder)
    assert "\ncp " not in exported_here
