"""The browser's preprocessing and postprocessing (web/*.js) against the Python runtime's.

Python writes each case into a folder: for preprocessing the raw image bytes, the metadata and
the tensor `preprocess` makes, checked within 1e-6 (measured: one float32 step, 6e-8, at most);
for postprocessing a model's output and the class mask and instance labels `postprocess` makes,
checked for equality. `node --test web/test/` reads them.
"""

import dataclasses
import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.test_flips import running_sum_from_top_left
from tests.test_instances import bridged_core_probabilities, unseeded_strip_probabilities
from unet.runtime.backends import LiteRTBackend
from unet.runtime.flips import flip_averaged
from unet.runtime.imageio import image_files, read_image
from unet.runtime.metadata import (
    InstanceParams,
    ModelMetadata,
    Normalisation,
    load_metadata,
    model_metadata_files,
)
from unet.runtime.overlay import segmentation_overlay
from unet.runtime.preprocess import PreprocessInfo, postprocess, preprocess
from unet.runtime.segmenter import Segmenter
from unet.runtime.variants import BROWSER_VARIANT, variant_path

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
    (tmp_path / "preprocess").mkdir()
    for name, case in CASES.items():
        write_case(tmp_path / "preprocess", name, *case)
    completed = run_node_tests(tmp_path, "preprocess")
    assert f"# pass {len(CASES) + 1}" in completed.stdout


def run_node_tests(fixtures: Path, kind: str) -> subprocess.CompletedProcess:
    """`node --test web/test/KIND.test.js` on the fixtures Python wrote into `fixtures`/KIND."""
    completed = subprocess.run([NODE, "--test", str(REPO / "web" / "test" / f"{kind}.test.js")],
                               capture_output=True, text=True,
                               env={"WEB_FIXTURES": str(fixtures), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    return completed


def write_postprocess_case(folder: Path, name: str, probabilities: np.ndarray, metadata: ModelMetadata,
                           size: tuple[int, int], threshold: float | None = None) -> None:
    segmentation = postprocess(probabilities, PreprocessInfo(size), metadata, threshold)
    (folder / f"{name}.probabilities").write_bytes(probabilities.astype(np.float32).tobytes())
    (folder / f"{name}.class_mask").write_bytes(segmentation.class_mask.astype(np.uint8).tobytes())
    case = {"metadata": metadata.to_dict(), "size": list(size), "threshold": threshold,
            "probabilities": f"{name}.probabilities", "class_mask": f"{name}.class_mask"}
    if segmentation.instance_labels is not None:
        (folder / f"{name}.instances").write_bytes(segmentation.instance_labels.astype(np.int32).tobytes())
        case.update(instance_labels=f"{name}.instances", instance_count=segmentation.instance_count)
    (folder / f"{name}.json").write_text(json.dumps(case))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_browser_postprocessing_gives_pythons_masks_and_instances(tmp_path):
    """Shipped models' real outputs on every example image, at the image's size, 2x up and 0.6x down."""
    folder = tmp_path / "postprocess"
    folder.mkdir()
    count = 0
    for metadata_path in model_metadata_files(REPO / "assets"):
        metadata = load_metadata(metadata_path)
        backend = LiteRTBackend(variant_path(metadata_path, BROWSER_VARIANT), num_threads=1)
        for example in image_files(REPO / "assets" / "examples"):
            if not example.name.startswith(f"{metadata.name}-"):
                continue
            image = read_image(example)
            probabilities = backend.run(preprocess(image, metadata)[0])
            height, width = image.shape[:2]
            for label, size in (("same", (height, width)), ("up", (2 * height, 2 * width + 3)),
                                ("down", (round(0.6 * height), round(0.6 * width)))):
                write_postprocess_case(folder, f"{example.stem}-{label}", probabilities, metadata, size)
                count += 1
            if metadata.mode != "instance":
                continue
            # Every marker choice the tuner can make: distance-transform peaks too.
            for distance in (3, 5):
                peaks = dataclasses.replace(metadata, instance=dataclasses.replace(
                    metadata.instance, marker_min_distance=distance))
                for label, size in (("same", (height, width)), ("down", (round(0.6 * height), round(0.6 * width)))):
                    write_postprocess_case(folder, f"{example.stem}-peaks{distance}-{label}", probabilities, peaks,
                                           size)
                    count += 1
    binary = ModelMetadata(input_size=(32, 40), channels=1, class_names=["background", "object"])
    smooth = np.random.default_rng(3).random((1, 32, 40, 1)).astype(np.float32)
    write_postprocess_case(folder, "binary-threshold", smooth, binary, (70, 50), threshold=0.4)
    for keep_unseeded in (True, False):
        instance = ModelMetadata(input_size=(12, 20), channels=1, class_names=["background", "interior", "boundary"],
                                 mode="instance", instance=InstanceParams(min_size=4, keep_unseeded=keep_unseeded))
        write_postprocess_case(folder, f"unseeded-strip-kept-{keep_unseeded}", unseeded_strip_probabilities()[None],
                               instance, (24, 40))
    # A 4-class model's cores seed the watershed; soft probabilities so that the flooding order
    # and the peaks' plateaus are not all ties.
    smooth = np.random.default_rng(5).uniform(0.0, 0.2, (24, 40, 4)).astype(np.float32)
    core_probabilities = (bridged_core_probabilities() * 0.8 + smooth)[None]
    for distance in (0, 3):
        cored = ModelMetadata(input_size=(24, 40), channels=1,
                              class_names=["background", "interior", "boundary", "core"], mode="instance",
                              instance=InstanceParams(min_size=4, core_fraction=0.5, marker_min_distance=distance))
        write_postprocess_case(folder, f"core-seeds-peaks{distance}", core_probabilities, cored, (48, 75))
    completed = run_node_tests(tmp_path, "postprocess")
    assert f"# pass {count + 6}" in completed.stdout, completed.stdout[-2000:]


def write_overlay_case(folder: Path, name: str, image: np.ndarray, segmentation, colours, opacity) -> None:
    expected = segmentation_overlay(image, segmentation, colours, opacity)
    channels = 1 if image.ndim == 2 else image.shape[2]
    (folder / f"{name}.image").write_bytes(np.ascontiguousarray(image).tobytes())
    (folder / f"{name}.class_mask").write_bytes(segmentation.class_mask.astype(np.uint8).tobytes())
    (folder / f"{name}.expected").write_bytes(np.ascontiguousarray(expected, dtype=np.uint8).tobytes())
    case = {"image": f"{name}.image", "dtype": image.dtype.name, "height": image.shape[0],
            "width": image.shape[1], "channels": channels, "class_mask": f"{name}.class_mask",
            "class_colours": [list(colour) for colour in colours], "opacity": opacity,
            "expected": f"{name}.expected"}
    if segmentation.instance_labels is not None:
        (folder / f"{name}.instances").write_bytes(segmentation.instance_labels.astype(np.int32).tobytes())
        case["instance_labels"] = f"{name}.instances"
    (folder / f"{name}.json").write_text(json.dumps(case))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_browser_overlay_draws_pythons_pixels(tmp_path):
    """Every shipped example's int8 segmentation drawn by overlay.py and overlay.js, at the default
    opacity and at one where numpy's rounding of halves decides (0.5 of odd sums)."""
    folder = tmp_path / "overlay"
    folder.mkdir()
    count = 0
    for metadata_path in model_metadata_files(REPO / "assets"):
        metadata = load_metadata(metadata_path)
        segmenter = Segmenter(LiteRTBackend(variant_path(metadata_path, BROWSER_VARIANT), num_threads=1), metadata)
        for example in image_files(REPO / "assets" / "examples"):
            if not example.name.startswith(f"{metadata.name}-"):
                continue
            image = read_image(example)
            segmentation = segmenter.segment(image).segmentation
            for opacity in (None, 0.5, 0.3):
                write_overlay_case(folder, f"{example.stem}-{opacity}", image, segmentation,
                                   metadata.class_colours, opacity)
                count += 1
    completed = run_node_tests(tmp_path, "overlay")
    assert f"# pass {count + 1}" in completed.stdout, completed.stdout[-2000:]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_browser_flip_average_matches_python(tmp_path):
    folder = tmp_path / "flips"
    folder.mkdir()
    shapes = [(1, 1, 3, 1), (1, 5, 7, 2), (1, 16, 12, 4)]
    rng = np.random.default_rng(5)
    for index, shape in enumerate(shapes):
        tensor = rng.random(shape, dtype=np.float32)
        (folder / f"{index}.tensor").write_bytes(tensor.tobytes())
        (folder / f"{index}.expected").write_bytes(flip_averaged(running_sum_from_top_left, tensor).tobytes())
        (folder / f"{index}.json").write_text(json.dumps(
            {"size": list(shape[1:3]), "tensor": f"{index}.tensor", "expected": f"{index}.expected"}))
    completed = run_node_tests(tmp_path, "flips")
    assert f"# pass {len(shapes) + 1}" in completed.stdout, completed.stdout[-2000:]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_browser_tests_fail_without_their_fixtures(tmp_path):
    for kind in ("preprocess", "postprocess", "overlay", "flips"):
        completed = subprocess.run([NODE, "--test", str(REPO / "web" / "test" / f"{kind}.test.js")],
                                   capture_output=True, text=True,
                                   env={"WEB_FIXTURES": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
        assert completed.returncode != 0
        assert f"no {kind} fixtures: run `pytest tests/test_web_parity.py`" in completed.stdout + completed.stderr
