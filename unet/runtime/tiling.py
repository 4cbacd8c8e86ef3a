"""Sliding-window inference at full resolution for images larger than the model input.

Windows overlap; each window's probabilities are weighted by a ramp that is low at its
edges (where context is missing) and blended, so tile seams do not show in the mask.
"""

from __future__ import annotations

import time

import numpy as np

from unet.runtime.backends import ModelCall
from unet.runtime.metadata import ModelMetadata
from unet.runtime.preprocess import NORMALISED, prepare_pixels


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows covering 0..length with at least `overlap` fraction shared."""
    if length <= window:
        return [0]
    stride = max(1, int(window * (1.0 - overlap)))
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return starts


def _blend_weights(height: int, width: int) -> np.ndarray:
    def ramp(n: int) -> np.ndarray:
        position = (np.arange(n) + 0.5) / n
        return np.minimum(position, 1.0 - position) * 2.0 + 1e-3

    return np.outer(ramp(height), ramp(width)).astype(np.float32)[..., None]


def tiled_probabilities(
    image: np.ndarray,
    metadata: ModelMetadata,
    run_tensor: ModelCall,
    overlap: float = 0.25,
    encoding: str = NORMALISED,
) -> tuple[np.ndarray, float]:
    """Probabilities (H, W, K) for an image of any size, and the milliseconds spent in the model.

    Images smaller than the window are padded by reflection and the padding cut off again.
    `encoding` is what the model's tensor holds (unet.runtime.preprocess); an RGB8 model
    normalises each window on its own.
    """
    prepared = prepare_pixels(image, metadata, encoding)
    height, width = prepared.shape[:2]
    window_h, window_w = metadata.input_size
    pad_h, pad_w = max(0, window_h - height), max(0, window_w - width)
    if pad_h or pad_w:
        prepared = np.pad(prepared, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    padded_h, padded_w = prepared.shape[:2]
    weights = _blend_weights(window_h, window_w)
    accumulated = np.zeros((padded_h, padded_w, metadata.output_channels), dtype=np.float32)
    weight_sum = np.zeros((padded_h, padded_w, 1), dtype=np.float32)
    model_ms = 0.0
    for top in window_starts(padded_h, window_h, overlap):
        for left in window_starts(padded_w, window_w, overlap):
            window = prepared[top : top + window_h, left : left + window_w]
            start = time.perf_counter()
            output = run_tensor(np.ascontiguousarray(window[None]))[0]
            model_ms += (time.perf_counter() - start) * 1000.0
            accumulated[top : top + window_h, left : left + window_w] += output * weights
            weight_sum[top : top + window_h, left : left + window_w] += weights
    probabilities = accumulated / weight_sum
    return probabilities[:height, :width], model_ms
