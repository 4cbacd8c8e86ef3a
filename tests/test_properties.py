"""Property-based tests: random sizes, dtypes and label values never crash the shared
pre/postprocessing, the instance post-processing, the metrics or the folder loader, and keep
their invariants (output size equals input size, labels in range, scores in [0, 1])."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from unet.data.folder import DatasetError, load_folder
from unet.runtime.instance_metrics import dataset_instance_scores
from unet.runtime.instances import instances_from_probabilities
from unet.runtime.metadata import InstanceParams, ModelMetadata
from unet.runtime.metrics import segmentation_scores
from unet.runtime.preprocess import postprocess, preprocess

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

sizes = st.tuples(st.integers(1, 70), st.integers(1, 70))
dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.int32, np.float64, bool])


@st.composite
def images(draw):
    height, width = draw(sizes)
    channels = draw(st.sampled_from([None, 3, 4]))
    shape = (height, width) if channels is None else (height, width, channels)
    dtype = draw(dtypes)
    if dtype is bool:
        elements = st.booleans()
    elif np.issubdtype(dtype, np.floating):
        elements = st.floats(width=32) | st.floats(-1e6, 1e6, width=32)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -(2**20)), min(info.max, 2**20))
    return draw(arrays(dtype, shape, elements=elements))


@SETTINGS
@given(image=images(), channels=st.sampled_from([1, 3]), classes=st.integers(1, 4),
       normalisation=st.sampled_from(["percentile", "unit"]), data=st.data())
def test_preprocess_then_postprocess_keeps_the_image_size_and_valid_labels(image, channels, classes, normalisation,
                                                                           data):
    from unet.runtime.imageio import read_image

    image = read_image(image)  # the decoder's layout rules: (H, W) or (H, W, 3), known dtypes
    metadata = ModelMetadata(input_size=(16, 24), channels=channels,
                             class_names=["background"] + [f"c{i}" for i in range(max(1, classes - 1))])
    metadata.normalisation.method = normalisation
    tensor, info = preprocess(image, metadata)
    assert tensor.shape == (1, 16, 24, channels) and tensor.dtype == np.float32
    assert np.isfinite(tensor).all() and tensor.min() >= 0.0 and tensor.max() <= 1.0
    output_channels = metadata.output_channels
    raw = data.draw(arrays(np.float32, (1, 16, 24, output_channels), elements=st.floats(0, 1, width=32)))
    segmentation = postprocess(raw, info, metadata)
    assert segmentation.class_mask.shape == image.shape[:2]
    assert segmentation.class_mask.max() < metadata.num_classes


@SETTINGS
@given(size=sizes, data=st.data(), params=st.builds(
    InstanceParams, boundary_width=st.integers(1, 3), min_size=st.integers(1, 40),
    interior_threshold=st.floats(0.05, 0.95), foreground_threshold=st.floats(0.05, 0.95),
    marker_min_distance=st.integers(0, 8)))
def test_instance_post_processing_gives_sequential_ids_inside_the_foreground(size, data, params):
    logits = data.draw(arrays(np.float32, (*size, 3), elements=st.floats(-5, 5, width=32)))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    labels = instances_from_probabilities(probabilities, params)
    assert labels.shape == size and labels.dtype == np.int32
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))
    for instance_id in ids:
        assert (labels == instance_id).sum() >= params.min_size


label_images = st.builds(lambda seed, size, k: np.random.default_rng(seed).integers(0, k, size),
                         st.integers(0, 2**16), sizes, st.integers(1, 6))


@SETTINGS
@given(target=label_images, data=st.data(), num_classes=st.integers(6, 8))
def test_semantic_scores_stay_in_the_unit_interval(target, data, num_classes):
    predicted = data.draw(arrays(np.int64, target.shape, elements=st.integers(0, num_classes - 1)))
    scores = segmentation_scores(target, predicted, num_classes)
    values = [*scores.per_class_iou, *scores.per_class_dice, scores.mean_iou, scores.mean_dice,
              scores.pixel_accuracy]
    assert all(0.0 <= v <= 1.0 for v in values)
    identical = segmentation_scores(target, target, num_classes)
    assert identical.mean_iou == identical.pixel_accuracy == 1.0


@SETTINGS
@given(truth=label_images, prediction=label_images)
def test_instance_scores_stay_in_the_unit_interval(truth, prediction):
    prediction = np.resize(prediction, truth.shape)
    scores = dataset_instance_scores([truth], [prediction])
    for key in ("f1@0.5", "f1@0.9", "dsb_score", "panoptic_quality"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert dataset_instance_scores([truth], [truth])["f1@0.5"] == 1.0


@SETTINGS
@given(pairs=st.lists(st.tuples(sizes, st.integers(0, 5), st.booleans(), st.booleans()), min_size=1, max_size=4),
       num_classes=st.integers(2, 4))
def test_folder_loader_accepts_valid_pairs_and_names_every_bad_one(tmp_path_factory, pairs, num_classes):
    root = tmp_path_factory.mktemp("folder")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    expected_problems = []
    for index, ((height, width), top_label, resized, sixteen_bit) in enumerate(pairs):
        image = np.full((height, width), 100, np.uint16 if sixteen_bit else np.uint8)
        Image.fromarray(image).save(root / "images" / f"s{index}.png")
        mask = np.zeros((height, width), np.uint8)
        mask.flat[0] = top_label
        if resized:
            mask = np.zeros((height + 1, width), np.uint8)
            expected_problems.append(f"s{index}")
        elif top_label >= num_classes:
            expected_problems.append(f"s{index}")
        Image.fromarray(mask).save(root / "masks" / f"s{index}.png")
    if expected_problems:
        with pytest.raises(DatasetError) as refused:
            load_folder(root, num_classes=num_classes)
        assert all(stem in str(refused.value) for stem in expected_problems)
    else:
        samples = load_folder(root, num_classes=num_classes)
        assert len(samples) == len(pairs)
        for sample in samples:
            assert sample.image.shape == sample.labels.shape
            assert sample.labels.max() < num_classes
    assert sorted(p.name for p in Path(root).iterdir()) == ["images", "masks"]


@SETTINGS
@given(labels=label_images, offset=st.sampled_from([0, 1000, 2**16 - 7, 2**40]))
def test_fast_label_counting_matches_numpy_unique(labels, offset):
    from unet.runtime.instance_metrics import _ids_and_index

    labels = labels + offset
    ids, index = _ids_and_index(labels)
    expected_ids, expected_index = np.unique(labels, return_inverse=True)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(index, expected_index.ravel())
