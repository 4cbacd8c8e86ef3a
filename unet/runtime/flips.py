"""Test-time flips: a model's probabilities averaged over the image and its three mirror images.

The mirror images are the horizontal, the vertical and the double flip of the model input, each
output flipped back before the average, so every pixel's probabilities are the mean of four
model calls that saw it from four sides. It costs four model calls a pass. On an earlier nuclei
model it raised F1@0.5 on every development row but one; on the one shipped now it gains nothing
on the mean (bench/results/merges.md). web/flips.js is the browser's copy, held to this one by
tests/test_web_parity.py.
"""

from __future__ import annotations

import numpy as np

from unet.runtime.backends import ModelCall

# Axes of a (batch, height, width, channels) tensor: none, width, height, both.
FLIP_AXES: tuple[tuple[int, ...], ...] = ((), (2,), (1,), (1, 2))


def flip_averaged(run: ModelCall, tensor: np.ndarray) -> np.ndarray:
    """The mean of `run` over `tensor` and its mirror images, each output flipped back."""
    total: np.ndarray | None = None
    for axes in FLIP_AXES:  # np.flip over no axes is the array itself
        output = np.flip(np.asarray(run(np.ascontiguousarray(np.flip(tensor, axes))), np.float32), axes)
        total = output if total is None else total + output
    return total / np.float32(len(FLIP_AXES))
