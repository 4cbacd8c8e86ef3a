"""Shared fixtures: every test makes its own data; nothing is downloaded."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from unet.runtime.metadata import ModelMetadata


@pytest.fixture
def binary_metadata() -> ModelMetadata:
    return ModelMetadata(input_size=(32, 32), channels=1, class_names=["background", "object"])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def trained_and_exported(tmp_path_factory):
    """A small binary U-Net trained on synthetic discs and exported to every default variant.

    Returns (folder, report, failures); the folder is laid out like assets/ (`discs/discs.*`).
    """
    pytest.importorskip("tensorflow")
    from export.to_tflite import ExportOptions, export_model
    from unet.data.synthetic import SyntheticSpec
    from unet.training.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("assets")
    out = root / "discs"
    train(TrainConfig(
        out=out, synthetic=SyntheticSpec(count=120, size=(64, 64), dark_fraction=0.0), input_size=64,
        depth=3, base_filters=16, batch_size=16, samples_per_epoch=160, learning_rate=3e-3,
        epochs=6, patience=6, name="discs", verbose=0,
    ))
    options = ExportOptions(
        variants=("float32", "float16", "int8", "int8-float-io"), calib=None, calib_n=32, eval_data=None, eval_n=16,
        max_iou_drop=0.02, float_layers=(), latency_runs=3, worst_layers=5,
    )
    report, failures = export_model(out / "discs.keras", options)
    return out, report, failures


@pytest.fixture
def app_handlers(trained_and_exported, tmp_path):
    """The app's handlers on the session's trained and exported model."""
    pytest.importorskip("gradio")
    from unet.serve.compare import ModelCatalog
    from unet.serve.handlers import Handlers

    folder, _, _ = trained_and_exported
    return Handlers(ModelCatalog(folder.parent), downloads=tmp_path / "downloads")


@pytest.fixture
def shipped_handlers(tmp_path):
    """The app's handlers on the shipped models (nothing is trained)."""
    pytest.importorskip("gradio")
    from app import ASSETS
    from unet.serve.compare import ModelCatalog
    from unet.serve.handlers import Handlers

    return Handlers(ModelCatalog(ASSETS), downloads=tmp_path / "downloads")


def pytest_collection_modifyitems(items):
    """A test that needs the trained model is slow, whether or not it says so."""
    for item in items:
        if "trained_and_exported" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def no_training_outside_the_slow_tier(request, monkeypatch):
    """`pytest -m "not slow"` trains nothing: a fast test that reaches training fails."""
    if request.node.get_closest_marker("slow") is None:
        from unet.training import trainer

        def refuse(*args, **kwargs):
            raise AssertionError(f"{request.node.name} trains a model; mark it slow")

        monkeypatch.setattr(trainer, "fit", refuse)
