"""The portable variant and the TFLite metadata inside every exported file, checked with MediaPipe's own code."""

import shutil
import zipfile

import numpy as np
import pytest

from bench.portable import ASSETS, at_input_size, class_mask_from_mediapipe, compare_example, examples_of
from unet.runtime.backends import LiteRTBackend
from unet.runtime.imageio import read_image, read_mask
from unet.runtime.metadata import (
    EMBEDDED_METADATA_FILE,
    LABELS_FILE,
    MetadataError,
    load_metadata,
    model_metadata_files,
)
from unet.runtime.preprocess import NORMALISED, RGB8, preprocess
from unet.runtime.segmenter import Segmenter
from unet.runtime.variants import BROWSER_VARIANT, PORTABLE_VARIANT, SHIPPED_VARIANTS, variant_path
from unet.segment import segment_files

SHIPPED = {path.parent.name: path for path in model_metadata_files(ASSETS)}


def needs_mediapipe():
    return pytest.importorskip("mediapipe", reason="MediaPipe Tasks is not installed (requirements-mediapipe.txt)")


def portable_path(name: str):
    return variant_path(SHIPPED[name], PORTABLE_VARIANT)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_mediapipe_category_mask_agrees_with_the_project_int8_mask_on_every_example(name):
    """Given at the input size, MediaPipe's mask and the project's int8 mask differ only by the preprocessing."""
    needs_mediapipe()
    metadata = load_metadata(SHIPPED[name])
    examples = examples_of(metadata)
    assert examples, f"no shipped examples for {name}"
    for path in examples:
        row = compare_example(SHIPPED[name].parent, metadata, path)
        print(f"{name} {path.name}: {row['agreement_at_input_size']:.4%} at the input size, "
              f"{row['agreement_full_size']:.4%} given at full size (MediaPipe resizes)")
        assert row["agreement_at_input_size"] >= 0.99


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_mediapipe_reads_the_labels_and_its_confidences_are_the_files_probabilities(name):
    needs_mediapipe()
    from bench.portable import mediapipe_segment

    metadata = load_metadata(SHIPPED[name])
    small = at_input_size(read_image(examples_of(metadata)[0]), metadata)
    _, confidences = mediapipe_segment(portable_path(name), small)
    portable = LiteRTBackend(portable_path(name))
    probabilities = portable.run(preprocess(small, metadata, RGB8)[0])[0]
    assert len(confidences) == metadata.output_channels
    for channel, confidence in enumerate(confidences):
        np.testing.assert_allclose(confidence, probabilities[..., channel], atol=2e-3)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_file_carries_the_labels_and_the_metadata_json(name):
    sidecar = SHIPPED[name].read_text()
    metadata = load_metadata(SHIPPED[name])
    for variant in SHIPPED_VARIANTS:
        with zipfile.ZipFile(variant_path(SHIPPED[name], variant)) as packed:
            assert packed.read(EMBEDDED_METADATA_FILE).decode() == sidecar
            labels = packed.read(LABELS_FILE).decode().splitlines()
        assert labels == metadata.class_names[-metadata.output_channels:]


def test_the_portable_file_takes_rgb_bytes_and_the_network_file_normalised_floats():
    portable = LiteRTBackend(portable_path("nuclei"))
    network = LiteRTBackend(variant_path(SHIPPED["nuclei"], BROWSER_VARIANT))
    assert portable.input_encoding == RGB8 and portable.input_shape == (1, 256, 256, 3)
    assert network.input_encoding == NORMALISED and network.input_shape == (1, 256, 256, 1)
    assert portable.output_quantisation.dtype == "float32"


def test_the_edge_runner_on_files_without_sidecars_writes_the_same_masks(tmp_path):
    """A .tflite that travels alone reads its metadata from inside itself."""
    lone = tmp_path / "lone"
    lone.mkdir()
    for name, metadata_path in SHIPPED.items():
        examples = examples_of(load_metadata(metadata_path))
        for variant in ("int8", PORTABLE_VARIANT):
            model = variant_path(metadata_path, variant)
            copied = lone / model.name
            shutil.copy(model, copied)
            with_sidecar = Segmenter.from_path(model)
            alone = Segmenter.from_path(copied)
            assert alone.metadata == with_sidecar.metadata
            segment_files(with_sidecar, examples, tmp_path / f"{name}-{variant}-sidecar")
            segment_files(alone, examples, tmp_path / f"{name}-{variant}-alone")
            for example in examples:
                for kind in ("mask", "instances"):
                    written = tmp_path / f"{name}-{variant}-sidecar" / f"{example.stem}_{kind}.png"
                    if written.exists():
                        alone_mask = tmp_path / f"{name}-{variant}-alone" / written.name
                        np.testing.assert_array_equal(read_mask(written), read_mask(alone_mask))


def test_the_sidecar_wins_over_the_embedded_json(tmp_path):
    model = tmp_path / "nuclei.int8.tflite"
    shutil.copy(variant_path(SHIPPED["nuclei"], "int8"), model)
    metadata = load_metadata(SHIPPED["nuclei"])
    metadata.description = "edited beside the file"
    (tmp_path / "nuclei.json").write_text(__import__("json").dumps(metadata.to_dict()))
    assert load_metadata(model).description == "edited beside the file"


def test_a_file_without_metadata_or_sidecar_is_refused_in_one_line(tmp_path):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(b"TFL3 not really a model")
    with pytest.raises(MetadataError, match="carries no metadata and has no sidecar bare.json"):
        load_metadata(bare)


def test_tflite_metadata_says_what_mediapipe_needs():
    """Name, version, RGB input, mask output with labels, activation NONE; no mean/std for percentiles."""
    pytest.importorskip("mediapipe", reason="the metadata schema module comes with MediaPipe")
    from mediapipe.tasks.metadata import image_segmenter_metadata_schema_py_generated as segmenter_fb
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(portable_path("nuclei").read_bytes()), 0)
    entry = next(model.Metadata(i) for i in range(model.MetadataLength())
                 if model.Metadata(i).Name() == b"TFLITE_METADATA")
    data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    described = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(data, 0))
    assert described.name == b"nuclei" and b"sha256:" in described.version
    assert described.minParserVersion == b"1.5.0"
    (subgraph,) = described.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.content.contentProperties.colorSpace == fb.ColorSpaceType.RGB
    assert not image.processUnits
    (masks,) = subgraph.outputTensorMetadata
    assert [f.name for f in masks.associatedFiles] == [LABELS_FILE.encode()]
    assert masks.associatedFiles[0].type == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    (custom,) = subgraph.customMetadata
    assert custom.name == b"SEGMENTER_METADATA"
    options = segmenter_fb.ImageSegmenterOptions.GetRootAs(bytes(custom.data), 0)
    assert options.Activation() == segmenter_fb.Activation.NONE
    assert [f.name for f in described.associatedFiles] == [EMBEDDED_METADATA_FILE.encode()]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_portable_file_is_its_preprocessing_then_the_network_file(name):
    """Joining the graphs changes nothing: portable(bytes) == int8-float-io(preprocessing(bytes)), bit for bit."""
    from ai_edge_litert.interpreter import Interpreter

    from export.portable import preprocessing_tflite

    metadata = load_metadata(SHIPPED[name])
    interpreter = Interpreter(model_content=preprocessing_tflite(metadata))
    interpreter.allocate_tensors()
    small = at_input_size(read_image(examples_of(metadata)[0]), metadata)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], small[None])
    interpreter.invoke()
    normalised = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    network = LiteRTBackend(variant_path(SHIPPED[name], BROWSER_VARIANT))
    portable = LiteRTBackend(portable_path(name))
    np.testing.assert_array_equal(portable.run(small[None]), network.run(normalised))
    np.testing.assert_allclose(normalised, preprocess(small, metadata)[0], atol=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["percentile", "unit"])
def test_the_in_graph_preprocessing_is_the_runtime_preprocess(method):
    """Random, flat, nearly flat and two-valued images, RGB and grey models alike."""
    from export.portable import preprocessing_model
    from unet.runtime.metadata import ModelMetadata, Normalisation

    rng = np.random.default_rng(3)
    images = {
        "random": rng.integers(0, 256, (24, 20, 3), dtype=np.uint8),
        "dim": rng.integers(10, 14, (24, 20, 3), dtype=np.uint8),
        "flat": np.full((24, 20, 3), 7, np.uint8),
        "one bright pixel": np.pad(np.full((1, 1, 3), 200, np.uint8), ((0, 23), (0, 19), (0, 0))),
        "two values": np.where(rng.random((24, 20, 1)) < 0.5, 30, 220).astype(np.uint8).repeat(3, -1),
    }
    for channels in (1, 3):
        metadata = ModelMetadata(input_size=(24, 20), channels=channels, class_names=["a", "b"],
                                 normalisation=Normalisation(method, 1.0, 99.8))
        model = preprocessing_model(metadata)
        for label, image in images.items():
            in_graph = np.asarray(model(image[None]))
            expected = preprocess(image, metadata)[0]
            np.testing.assert_allclose(in_graph, expected, atol=1e-6, err_msg=f"{label}, {channels} channel(s)")


@pytest.fixture(scope="module")
def simple_unet_export(tmp_path_factory):
    """The textbook simple_unet (one sigmoid channel), trained briefly on discs, exported with its portable file."""
    pytest.importorskip("tensorflow")
    from export.to_tflite import ExportOptions, export_model
    from unet.data.synthetic import SyntheticSpec
    from unet.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("simple") / "simple"
    train(TrainConfig(out=out, synthetic=SyntheticSpec(count=64, size=(64, 64), dark_fraction=0.0),
                      input_size=64, architecture="simple", batch_size=16, samples_per_epoch=128,
                      learning_rate=3e-3, epochs=4, patience=4, name="simple", verbose=0))
    options = ExportOptions(variants=("int8", PORTABLE_VARIANT), calib=None, calib_n=16, eval_data=None,
                            eval_n=8, max_iou_drop=1.0, float_layers=(), latency_runs=0, worst_layers=0)
    export_model(out / "simple.keras", options)
    return out


@pytest.mark.slow
def test_a_one_channel_sigmoid_model_round_trips_through_mediapipe(simple_unet_export):
    """MediaPipe inverts a 1-channel category mask: 0 is the foreground. Undone, it is the project's mask."""
    needs_mediapipe()
    from bench.portable import mediapipe_segment
    from unet.data.synthetic import SyntheticSpec, make_dataset

    portable = simple_unet_export / "simple.portable.tflite"
    metadata = load_metadata(portable)
    assert metadata.output_channels == 1
    project = Segmenter.from_path(portable)
    for sample in make_dataset(SyntheticSpec(count=3, size=(64, 64), dark_fraction=0.0, seed=99)):
        image = sample.image
        small = at_input_size(image, metadata)
        category, (confidence,) = mediapipe_segment(portable, small)
        segmentation = project.segment(small).segmentation
        foreground = segmentation.class_mask == 1
        assert foreground.any() and (~foreground).any()
        assert set(np.unique(category)) <= {0, 255}
        probability = segmentation.probabilities[..., 0]
        np.testing.assert_array_equal(category == 0, probability > 0.5)
        # MediaPipe's foreground is p > 0.5, the project's p >= threshold (0.5): they part only
        # where an int8 output step lands on 0.5 itself.
        differs = class_mask_from_mediapipe(category, metadata) != segmentation.class_mask
        assert np.all(probability[differs] == 0.5)
        np.testing.assert_allclose(confidence, segmentation.probabilities[..., 0], atol=2e-3)


def test_the_app_compares_the_portable_file_with_int8_each_fed_what_it_takes():
    from unet.runtime.variants import litert
    from unet.serve.compare import ModelCatalog, compare

    catalog = ModelCatalog(ASSETS)
    assert litert(PORTABLE_VARIANT).label in catalog.model("shapes").backends
    image = read_image(examples_of(load_metadata(SHIPPED["shapes"]))[0])
    compared = compare(catalog, image, "shapes", (litert("int8").label, litert(PORTABLE_VARIANT).label),
                       timed_runs=2)
    assert compared.agreement["pixel_agreement"] >= 0.99
