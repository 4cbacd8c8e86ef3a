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
