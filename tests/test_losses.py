"""Known-answer tests for the Keras losses and metrics on tiny hand-computed masks."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from unet.training.losses import (
    SegmentationMeanIoU,
    SegmentationPixelAccuracy,
    crossentropy_dice_loss,
    segmentation_crossentropy,
    soft_dice_loss,
)

# One 2x2 image; foreground is the top-left pixel.
LABELS = np.array([[[[1], [0]], [[0], [0]]]], dtype=np.float32)


def test_soft_dice_is_zero_for_a_perfect_binary_prediction():
    assert float(soft_dice_loss(LABELS, LABELS)) == pytest.approx(0.0)


def test_soft_dice_for_a_uniform_half_prediction():
    prediction = np.full_like(LABELS, 0.5)
    # intersection 0.5, sum target 1, sum prediction 2: dice = (1 + 1) / (3 + 1) = 0.5
    assert float(soft_dice_loss(LABELS, prediction)) == pytest.approx(0.5)


def test_soft_dice_with_an_empty_class_is_finite():
    empty = np.zeros_like(LABELS)
    assert float(soft_dice_loss(empty, empty)) == pytest.approx(0.0)
    # softmax over 3 classes, class 2 absent everywhere
    probabilities = np.zeros((1, 2, 2, 3), dtype=np.float32)
    probabilities[..., 0] = 1 - LABELS[..., 0]
    probabilities[..., 1] = LABELS[..., 0]
    assert float(soft_dice_loss(LABELS, probabilities)) == pytest.approx(0.0, abs=1e-6)


def test_binary_crossentropy_known_value():
    prediction = np.full_like(LABELS, 0.5)
    loss = np.asarray(segmentation_crossentropy(LABELS, prediction))
    assert loss.shape == (1, 2, 2)
    assert loss == pytest.approx(np.full((1, 2, 2), np.log(2)), rel=1e-4)


def test_sparse_categorical_crossentropy_known_value():
    probabilities = np.full((1, 2, 2, 4), 0.25, dtype=np.float32)
    loss = np.asarray(segmentation_crossentropy(LABELS, probabilities))
    assert loss == pytest.approx(np.full((1, 2, 2), np.log(4)), rel=1e-4)


def test_crossentropy_plus_dice_is_their_sum():
    prediction = np.full_like(LABELS, 0.5)
    assert float(crossentropy_dice_loss(LABELS, prediction)) == pytest.approx(np.log(2) + 0.5, rel=1e-4)


def test_mean_iou_metric_thresholds_sigmoid_output():
    prediction = np.array([[[[0.9], [0.6]], [[0.1], [0.2]]]], dtype=np.float32)
    metric = SegmentationMeanIoU(num_classes=2)
    metric.update_state(LABELS, prediction)
    # foreground: TP 1, union 2 -> 0.5; background: TP 2, union 3 -> 2/3
    assert float(metric.result()) == pytest.approx((0.5 + 2 / 3) / 2)


def test_mean_iou_metric_argmaxes_softmax_output_and_skips_absent_classes():
    probabilities = np.zeros((1, 2, 2, 3), dtype=np.float32)
    probabilities[..., 0] = 1 - LABELS[..., 0]
    probabilities[..., 1] = LABELS[..., 0]
    metric = SegmentationMeanIoU(num_classes=3)
    metric.update_state(LABELS, probabilities)
    assert float(metric.result()) == pytest.approx(1.0)


def test_pixel_accuracy_metric():
    prediction = np.array([[[[0.9], [0.6]], [[0.1], [0.2]]]], dtype=np.float32)
    metric = SegmentationPixelAccuracy()
    metric.update_state(LABELS, prediction)
    assert float(metric.result()) == pytest.approx(0.75)


def test_the_loop_weights_each_pixels_crossentropy_by_the_targets_second_channel():
    import tensorflow as tf

    from unet.training.loop import global_batch_loss

    probabilities = np.array([[[[0.8, 0.2], [0.3, 0.7]]]], dtype=np.float32)  # (1, 1, 2, 2)
    classes = np.array([[[[0.0], [0.0]]]], dtype=np.float32)
    weights = np.array([[[[1.0], [4.0]]]], dtype=np.float32)
    context = tf.distribute.get_replica_context()
    plain = float(global_batch_loss(("crossentropy",), classes, probabilities, 2, context))
    weighted = float(global_batch_loss(("crossentropy",), np.concatenate([classes, weights], -1),
                                       probabilities, 2, context))
    assert plain == pytest.approx((-np.log(0.8) - np.log(0.3)) / 2, rel=1e-5)
    assert weighted == pytest.approx((-np.log(0.8) - 4 * np.log(0.3)) / 2, rel=1e-5)
