"""The U-Net builders: exact textbook model, configurable model, errors, .keras round trip."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from unet.training.losses import crossentropy_dice_loss, SegmentationMeanIoU  # noqa: I001
from unet.training.models import build_unet, load_model, simple_unet


def test_simple_unet_is_the_textbook_model_with_56689_parameters():
    model = simple_unet((128, 128, 1))
    assert model.count_params() == 56_689
    assert model.output_shape == (None, 128, 128, 1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D",
        "Conv2DTranspose", "Concatenate", "Conv2D", "Conv2DTranspose", "Concatenate",
        "Conv2D", "Conv2D",
    ]
    assert model.layers[-1].activation.__name__ == "sigmoid"


@pytest.mark.parametrize(
    ("num_classes", "channels", "activation"), [(1, 1, "sigmoid"), (3, 3, "softmax")]
)
def test_build_unet_output_matches_classes(num_classes, channels, activation):
    model = build_unet((64, 64, channels), num_classes=num_classes, depth=3, base_filters=4)
    assert model.output_shape == (None, 64, 64, num_classes)
    assert model.layers[-1].activation.__name__ == activation


def test_build_unet_resize_upsampling_dropout_and_no_batchnorm():
    model = build_unet((32, 32, 1), depth=2, base_filters=4, batch_norm=False, dropout=0.3,
                       upsampling="resize")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "UpSampling2D" in kinds and "Dropout" in kinds
    assert "BatchNormalization" not in kinds and "Conv2DTranspose" not in kinds


def test_build_unet_is_fully_convolutional_with_none_sizes():
    model = build_unet((None, None, 1), depth=2, base_filters=4)
    output = model(np.zeros((1, 48, 80, 1), dtype=np.float32))
    assert output.shape == (1, 48, 80, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (100, 128, 1), "depth": 4}, "height 100 is not divisible by 2\\*\\*depth = 16"),
        ({"input_shape": (64, 64, 2)}, "channels must be 1 or 3, got 2"),
        ({"num_classes": 0}, "num_classes must be 1"),
        ({"depth": 0}, "depth must be at least 1"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"upsampling": "pixelshuffle"}, "upsampling must be one of"),
        ({"base_filters": 16, "max_filters": 8}, "max_filters \\(8\\) must be at least base_filters \\(16\\)"),
    ],
)
def test_build_unet_refuses_bad_combinations_naming_the_numbers(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_unet(**kwargs)


def test_max_filters_caps_every_level_from_the_one_that_would_pass_it():
    model = build_unet((64, 64, 1), num_classes=4, depth=3, base_filters=20, max_filters=48)
    filters = {layer.name: layer.filters for layer in model.layers if layer.name.endswith("_conv1")}
    assert filters == {"enc1_conv1": 20, "enc2_conv1": 40, "enc3_conv1": 48, "bottleneck_conv1": 48,
                       "dec3_conv1": 48, "dec2_conv1": 40, "dec1_conv1": 20}
    uncapped = build_unet((64, 64, 1), num_classes=4, depth=3, base_filters=20)
    assert model.count_params() < uncapped.count_params() / 3


def test_keras_round_trip_with_custom_objects_in_safe_mode(tmp_path):
    model = build_unet((32, 32, 1), num_classes=3, depth=2, base_filters=4)
    model.compile(optimizer="adam", loss=crossentropy_dice_loss,
                  metrics=[SegmentationMeanIoU(num_classes=3)])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_model(str(path), compile=True)
    sample = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded(sample), model(sample), atol=1e-6)
    assert loaded.loss.__name__ == "crossentropy_dice_loss"
