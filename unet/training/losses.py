"""Training losses and metrics (Keras), registered for `.keras` save and load.

Labels are class-index masks of shape (B, H, W, 1). A model with one output channel is
binary (sigmoid); with K >= 2 channels it is a softmax over K classes.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "unet"


def _one_hot_targets(y_true, y_pred):
    """(B, H, W, 1) class indices -> targets shaped like y_pred."""
    channels = y_pred.shape[-1]
    if channels == 1:
        return ops.cast(y_true, y_pred.dtype)
    labels = ops.cast(ops.squeeze(y_true, axis=-1), "int32")
    return ops.one_hot(labels, channels, dtype=y_pred.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
def segmentation_crossentropy(y_true, y_pred):
    """Binary cross-entropy for one sigmoid channel, sparse categorical otherwise; per pixel."""
    if y_pred.shape[-1] == 1:
        return keras.losses.binary_crossentropy(ops.cast(y_true, y_pred.dtype), y_pred)
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


@keras.saving.register_keras_serializable(package=PACKAGE)
def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """1 - soft Dice, computed over the whole batch and averaged over channels.

    For a sigmoid model the one channel is the foreground; for softmax every class counts.
    `smooth` keeps a class absent from both target and prediction at Dice 1 (loss 0), not NaN.
    """
    return dice_loss_from_sums(*dice_sums(y_true, y_pred), smooth)


def dice_sums(y_true, y_pred, axes=(0, 1, 2)):
    """Per channel: the sum of target x prediction, and the sum of both, over `axes`.

    Sums add across the parts of a batch, so Dice over a batch split between replicas is the
    Dice of the added sums (unet.training.loop), the same as on the whole batch.
    """
    targets = _one_hot_targets(y_true, y_pred)
    intersection = ops.sum(targets * y_pred, axis=axes)
    total = ops.sum(targets, axis=axes) + ops.sum(y_pred, axis=axes)
    return intersection, total


def dice_loss_from_sums(intersection, total, smooth: float = 1.0):
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - ops.mean(dice, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
def crossentropy_dice_loss(y_true, y_pred):
    """Mean pixel cross-entropy + soft Dice: CE for calibrated pixels, Dice for small objects."""
    return ops.mean(segmentation_crossentropy(y_true, y_pred)) + soft_dice_loss(y_true, y_pred)


LOSSES = {
    "ce": segmentation_crossentropy,
    "dice": soft_dice_loss,
    "ce_dice": crossentropy_dice_loss,
}
# The terms each loss adds up: mean pixel cross-entropy and soft Dice.
LOSS_TERMS = {"ce": ("crossentropy",), "dice": ("dice",), "ce_dice": ("crossentropy", "dice")}


def predicted_classes(y_pred, threshold: float = 0.5):
    """Probabilities (B, H, W, K) -> class indices (B, H, W) int32."""
    if y_pred.shape[-1] == 1:
        return ops.cast(y_pred[..., 0] >= threshold, "int32")
    return ops.cast(ops.argmax(y_pred, axis=-1), "int32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class SegmentationMeanIoU(keras.metrics.MeanIoU):
    """Mean IoU over classes from probabilities: thresholds a sigmoid, argmaxes a softmax.

    Classes absent from both target and prediction are left out of the mean, as in Keras.
    """

    def __init__(self, num_classes: int, name: str = "mean_iou", threshold: float = 0.5, **kwargs):
        super().__init__(num_classes=num_classes, name=name, **kwargs)
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(ops.squeeze(y_true, axis=-1), "int32")
        return super().update_state(labels, predicted_classes(y_pred, self.threshold), sample_weight)

    def get_config(self):
        config = super().get_config()
        config["threshold"] = self.threshold
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class SegmentationPixelAccuracy(keras.metrics.MeanMetricWrapper):
    """Fraction of pixels whose predicted class equals the target class."""

    def __init__(self, name: str = "pixel_accuracy", threshold: float = 0.5, **kwargs):
        super().__init__(fn=self._matches, name=name, **kwargs)
        self.threshold = threshold

    def _matches(self, y_true, y_pred):
        labels = ops.cast(ops.squeeze(y_true, axis=-1), "int32")
        return ops.cast(ops.equal(labels, predicted_classes(y_pred, self.threshold)), "float32")

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold, "dtype": self.dtype}
