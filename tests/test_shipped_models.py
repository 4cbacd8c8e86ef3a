"""The shipped demo models in assets/: present, small, accurate after quantisation, consistent."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet.runtime.variants import SHIPPED_VARIANTS

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
MODELS = ("nuclei", "brain-tissue", "shapes")


def report(name: str) -> dict:
    return json.loads((ASSETS / name / f"{name}.export.json").read_text())


@pytest.mark.parametrize("name", MODELS)
def test_every_shipped_model_has_its_files_and_model_card(name):
    folder = ASSETS / name
    for file in (f"{name}.keras", f"{name}.json", f"{name}.export.json", f"{name}.export.md",
                 "MODEL_CARD.md", "evaluation.json", *(f"{name}.{v}.tflite" for v in SHIPPED_VARIANTS)):
        assert (folder / file).is_file(), file
    card = (folder / "MODEL_CARD.md").read_text()
    assert "python -m unet.train" in card and "python export/to_tflite.py" in card
    int8 = report(name)["variants"]["int8"]
    assert f"{int8['accuracy']['mean_iou']:.4f}" in card  # numbers come from the export report


def test_assets_stay_under_25_megabytes():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    print(f"assets/: {total / 2**20:.1f} MiB")
    assert total < 25 * 2**20


@pytest.mark.parametrize("name", MODELS)
def test_int8_is_full_integer_small_and_within_the_accuracy_budget(name):
    from unet.runtime.backends import LiteRTBackend

    backend = LiteRTBackend(ASSETS / name / f"{name}.int8.tflite")
    assert backend.input_quantisation.dtype == "int8" and backend.output_quantisation.dtype == "int8"
    data = report(name)
    float_size = data["variants"]["float32"]["size_bytes"]
    int8 = data["variants"]["int8"]
    assert int8["size_bytes"] <= 0.30 * float_size
    drop = data["keras"]["accuracy"]["mean_iou"] - int8["accuracy"]["mean_iou"]
    print(f"{name}: float mean IoU {data['keras']['accuracy']['mean_iou']:.4f}, int8 drop {drop:.4f}, "
          f"pixel agreement {int8['agreement_with_keras']['pixel_agreement']:.4f}")
    assert drop <= 0.02
    assert int8["agreement_with_keras"]["pixel_agreement"] >= 0.98


def test_shipped_instance_model_counts_agree_between_keras_and_the_edge_runner(tmp_path):
    pytest.importorskip("tensorflow")
    from unet.runtime.segmenter import Segmenter, SegmentOptions

    examples = sorted((ASSETS / "examples").glob("nuclei-*.png"))
    assert examples
    completed = subprocess.run(
        [sys.executable, "-m", "unet.segment", str(ASSETS / "nuclei" / "nuclei.float32.tflite"),
         *map(str, examples), "--out", str(tmp_path), "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    edge_counts = {m.group(1): int(m.group(2))
                   for m in re.finditer(r"^(\S+\.png): .*, (\d+) instances", completed.stdout, re.M)}
    keras = Segmenter.from_path(ASSETS / "nuclei" / "nuclei.keras")
    # The edge runner's defaults for an instance model, given to the Keras segmenter by hand.
    defaults = SegmentOptions.default_for(keras.metadata).to_kwargs()
    for example in examples:
        segmentation = keras.segment(example, **defaults).segmentation
        print(f"{example.name}: Keras {segmentation.instance_count}, edge float32 {edge_counts[example.name]}")
        assert segmentation.instance_count == edge_counts[example.name]
        edge_labels = np.asarray(Image.open(tmp_path / f"{example.stem}_instances.png"))
        assert edge_labels.dtype == np.uint16 and edge_labels.shape == segmentation.instance_labels.shape


def test_shipped_json_holds_no_absolute_paths():
    import json

    def strings(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    files = sorted(ASSETS.glob("*/*.json"))
    assert len(files) >= 9
    for path in files:
        absolute = [text for text in strings(json.loads(path.read_text())) if text.startswith("/")]
        assert absolute == [], f"{path.name}: {absolute}"


def test_edge_runner_scales_to_a_given_diameter_and_records_it_in_summary_json(tmp_path):
    example = sorted((ASSETS / "examples").glob("nuclei-*.png"))[0]
    completed = subprocess.run(
        [sys.executable, "-m", "unet.segment", str(ASSETS / "nuclei" / "nuclei.int8.tflite"), str(example),
         "--out", str(tmp_path), "--diameter", "36", "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    image = summary["images"][0]
    trained = json.loads((ASSETS / "nuclei" / "nuclei.json").read_text())["object_diameter"]
    assert summary["options"]["object_diameter"] == 36
    assert image["scale"]["method"] == "given"
    assert image["scale"]["factor"] == pytest.approx(trained / 36)
    assert image["instance_count"] > 0 and image["timings_ms"]["model"] > 0


def test_edge_runner_refuses_a_diameter_together_with_auto_scale(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "unet.segment", str(ASSETS / "nuclei" / "nuclei.int8.tflite"),
         str(tmp_path), "--out", str(tmp_path / "out"), "--diameter", "20", "--auto-scale"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert completed.returncode == 2
    assert "not allowed with argument" in completed.stderr
