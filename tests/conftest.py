"""Shared fixtures: every test makes its own data; nothing is downloaded."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from unet.metadata import ModelMetadata


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
    from unet.train import TrainConfig, train

    root = tmp_path_factory.mktemp("assets")
    out = root / "discs"
    train(TrainConfig(
        out=out, synthetic=True, synthetic_count=120, synthetic_dark_fraction=0.0, input_size=64,
        depth=3, base_filters=16, batch_size=16, samples_per_epoch=160, learning_rate=3e-3,
        epochs=6, patience=6, name="discs", verbose=0,
    ))
    options = ExportOptions(
        variants=("float32", "float16", "int8"), calib=None, calib_n=32, eval_data=None, eval_n=16,
        max_iou_drop=0.02, float_layers=(), latency_runs=3, worst_layers=5,
    )
    report, failures = export_model(out / "discs.keras", options)
    return out, report, failures


@pytest.fixture
def app_module(trained_and_exported, monkeypatch):
    """The app with its model catalog pointed at the session's trained and exported model."""
    pytest.importorskip("gradio")
    import app
    from unet.compare import ModelCatalog

    folder, _, _ = trained_and_exported
    monkeypatch.setattr(app, "catalog", ModelCatalog(folder.parent))
    return app
