"""The export kit on U-Nets the project did not build: graph health, rewrites, the gate, the search."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from export.gate import gate
from export.report import ExportReport
from export.to_tflite import main as export_main
from tests.test_export import keras_io_unet


def calibration_folder(root, shape=(64, 64, 3), count=8):
    folder = root / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        # Smooth blobs rather than white noise: images a segmentation model could see.
        field = rng.random((shape[0] // 8, shape[1] // 8, shape[2]))
        image = np.asarray(Image.fromarray((field * 255).astype(np.uint8)).resize(shape[1::-1], Image.BILINEAR))
        Image.fromarray(image).save(folder / f"{index}.png")
    return folder


def unlabelled_report(pixel_agreement, per_class_iou, support):
    supported = [iou for iou, n in zip(per_class_iou, support, strict=True) if n / sum(support) >= 0.01]
    return ExportReport.from_dict({"model": "m.keras", "keras": {},
            "variants": {"int8": {"agreement_with_keras": {
                "pixel_agreement": pixel_agreement, "mean_iou": float(np.mean(per_class_iou)),
                "per_class_iou": per_class_iou, "support": support,
                "supported_mean_iou": float(np.mean(supported))}}}})


def test_a_near_empty_class_cannot_fail_the_unlabelled_gate_alone():
    # Background and one object class agree; a class with 0.01% of the pixels does not.
    report = unlabelled_report(0.998, [0.995, 0.99, 0.3], [600_000, 399_900, 100])
    assert report.variants["int8"]["agreement_with_keras"]["mean_iou"] < 0.98  # the old gate: fail
    verdict = gate(report, 0.02)
    assert verdict.failures == [] and report.checks is None
    assert "at least 1% of the pixels" in verdict.measure


def test_the_unlabelled_gate_fails_on_low_agreement_or_a_well_supported_class():
    low_agreement = unlabelled_report(0.99, [0.995, 0.99, 0.99], [600, 390, 10])
    assert any("agrees with float on 99.00%" in f for f in gate(low_agreement, 0.02).failures)
    bad_class = unlabelled_report(0.997, [0.995, 0.90, 1.0], [600, 390, 10])
    # All three classes hold at least 1%: 1 - mean(0.995, 0.90, 1.0) = 0.035.
    assert any("is 0.0350 below float" in f for f in gate(bad_class, 0.02).failures)


@pytest.mark.slow
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_keras_io_unet_exports_to_one_xnnpack_partition_after_the_rewrite(tmp_path, interpolation):
    import keras

    from export.rewrite import rewrite_for_tflite

    model = keras_io_unet((64, 64), 3, interpolation=interpolation)
    rewritten, rewrites = rewrite_for_tflite(model)
    batch = np.random.default_rng(1).random((2, 64, 64, 3)).astype(np.float32)
    difference = np.abs(np.asarray(rewritten(batch)) - np.asarray(model(batch))).max()
    upsampling = [r for r in rewrites if r.was.startswith("UpSampling2D")]
    assert len(upsampling) == (6 if interpolation == "nearest" else 0)
    assert len(rewrites) - len(upsampling) == 5  # the ReLUs at the start of each residual block
    assert difference == 0.0
    model.save(tmp_path / "pets.keras")
    calib = calibration_folder(tmp_path)
    # An untrained model's near-uniform softmax may fail the accuracy gate (exit 1); the report
    # is written either way, and the gate has its own tests above.
    assert export_main(["--model", str(tmp_path / "pets.keras"), "--calib", str(calib), "--quant", "float32,int8",
                        "--latency-runs", "3", "--worst-layers", "0"]) in (0, 1)
    report = json.loads((tmp_path / "pets.export.json").read_text())
    for variant in ("float32", "int8"):
        graph = report["variants"][variant]["graph"]
        assert graph["partitions"] == 1, graph
        assert "TILE" not in graph["op_counts"]
    markdown = (tmp_path / "pets.export.md").read_text()
    assert "Graph health" in markdown
    keras.backend.clear_session()


@pytest.mark.slow
def test_without_the_rewrite_the_report_flags_tile_ops_outside_xnnpack(tmp_path, capsys):
    keras_io_unet((64, 64), 3).save(tmp_path / "pets.keras")
    calib = calibration_folder(tmp_path)
    assert export_main(["--model", str(tmp_path / "pets.keras"), "--calib", str(calib), "--quant", "int8",
                        "--latency-runs", "0", "--worst-layers", "0", "--no-rewrite"]) in (0, 1)
    graph = json.loads((tmp_path / "pets.export.json").read_text())["variants"]["int8"]["graph"]
    assert graph["partitions"] > 1 and graph["outside_delegate"]["TILE"] == 12
    assert "UpSampling2D" in capsys.readouterr().err
    assert "TILE outside XNNPACK" in (tmp_path / "pets.export.md").read_text()


def wide_range_model(seed: int = 0):
    """A model int8 cannot carry: one channel of `wide` spans 10^4x the others, which hold the signal.

    `head` is made decisive (large weights), so that float and a good int8 agree on nearly every
    pixel; an untrained near-uniform softmax would flip its arg-max on any rounding.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    features = layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(inputs)
    wide = layers.Conv2D(8, 1, name="wide")(features)
    outputs = layers.Conv2D(3, 3, padding="same", activation="softmax", name="head")(wide)
    model = keras.Model(inputs, outputs)
    kernel, bias = model.get_layer("wide").get_weights()
    kernel[..., 0] *= 1e4  # channel 0: huge range, and `head` ignores it
    model.get_layer("wide").set_weights([kernel, bias])
    head_kernel, head_bias = model.get_layer("head").get_weights()
    head_kernel[:, :, 0, :] = 0.0
    model.get_layer("head").set_weights([head_kernel * 20, head_bias])
    return model


@pytest.mark.slow
def test_search_float_layers_makes_a_failing_int8_export_pass_and_is_reproduced(tmp_path):
    wide_range_model().save(tmp_path / "wide.keras")
    calib = calibration_folder(tmp_path, (32, 32, 3))
    common = ["--model", str(tmp_path / "wide.keras"), "--calib", str(calib), "--quant", "float32,int8",
              "--latency-runs", "2", "--worst-layers", "3"]
    assert export_main(common) == 1  # plain int8 fails the gate
    (tmp_path / "wide.json").unlink()
    # A model this small runs in microseconds and is mostly file header: its latency and size
    # say nothing, so the limits are opened wide.
    assert export_main([*common, "--search-float-layers", "--search-max-latency-ratio", "100",
                        "--search-max-size-ratio", "10"]) == 0
    report = json.loads((tmp_path / "wide.export.json").read_text())
    steps = report["float_layer_search"]["steps"]
    assert steps[-1]["passed"] and not any(step["passed"] for step in steps[:-1])
    chosen = steps[-1]["float_tensors"]
    assert any("wide" in tensor for tensor in chosen)
    metadata = json.loads((tmp_path / "wide.json").read_text())
    assert metadata["variants"]["int8"]["float_tensors"] == chosen
    assert "Float-layer search" in (tmp_path / "wide.export.md").read_text()
    # A later export without the search keeps the recorded list and still passes.
    assert export_main(common) == 0
    again = json.loads((tmp_path / "wide.export.json").read_text())
    assert again["variants"]["int8"]["float_tensors"] == chosen


def test_float_groups_rank_tensors_by_error_and_pair_each_with_its_consumer():
    """The search's order, alone: worst RMSE first, each erring tensor kept with the op after it."""
    from export.float_search import float_groups

    statistics = [{"tensor": "conv1", "rmse": 0.02, "position": 0},
                  {"tensor": "conv2", "rmse": 0.30, "position": 1},
                  {"tensor": "conv3", "rmse": 0.0, "position": 2},
                  {"tensor": "logits", "rmse": 0.10, "position": 3}]
    assert float_groups(statistics) == [("conv2", "conv3"), ("logits",), ("conv1", "conv2")]
