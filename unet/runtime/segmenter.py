"""One path for every backend: image -> preprocess -> backend -> postprocess -> Segmentation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet.runtime.backends import Backend, ModelLoadError, open_backend
from unet.runtime.imageio import ImageSource, read_image
from unet.runtime.metadata import ModelMetadata, load_metadata
from unet.runtime.preprocess import Segmentation, postprocess, preprocess, segment_probabilities
from unet.runtime.timing import elapsed_ms


@dataclass
class ModelTiming:
    """Model calls on one tensor: the warm-up call's output and time, then the timed calls."""

    output: np.ndarray
    warmup_ms: float
    latencies_ms: list[float]


@dataclass
class SegmentResult:
    segmentation: Segmentation
    timings_ms: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """A backend plus its metadata: segments images of any size the same way for every backend."""

    def __init__(self, backend: Backend, metadata: ModelMetadata) -> None:
        self.backend = backend
        self.metadata = metadata
        self._check_fit()

    @classmethod
    def from_path(cls, path: str | Path, num_threads: int | None = None) -> Segmenter:
        return cls(open_backend(path, num_threads), load_metadata(path))

    def _check_fit(self) -> None:
        height, width = self.metadata.input_size
        probe = np.zeros((1, height, width, self.metadata.channels), dtype=np.float32)
        try:
            output = self.backend.run(probe)
        except Exception as error:
            raise ModelLoadError(
                f"{self.backend.path} does not accept the input its metadata describes "
                f"(1, {height}, {width}, {self.metadata.channels}): {error}"
            ) from error
        expected = (1, height, width, self.metadata.output_channels)
        if output.shape != expected:
            raise ModelLoadError(
                f"{self.backend.path} outputs shape {output.shape} but its metadata describes "
                f"{expected} ({self.metadata.num_classes} classes)"
            )

    def run_tensor(self, tensor: np.ndarray) -> np.ndarray:
        return self.backend.run(tensor)

    def segment(
        self, image: ImageSource, threshold: float | None = None, tile: bool = False
    ) -> SegmentResult:
        """Segment one image; `tile` runs overlapping model-sized windows at full resolution."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        pixels = image if isinstance(image, np.ndarray) else read_image(image)
        timings["decode"] = elapsed_ms(start)
        if tile:
            from unet.runtime.tiling import tiled_probabilities

            start = time.perf_counter()
            probabilities, model_ms = tiled_probabilities(pixels, self.metadata, self.run_tensor)
            timings["model"] = model_ms
            timings["preprocess"] = elapsed_ms(start) - model_ms
            start = time.perf_counter()
            segmentation = segment_probabilities(probabilities, self.metadata, threshold)
        else:
            start = time.perf_counter()
            tensor, info = preprocess(pixels, self.metadata)
            timings["preprocess"] = elapsed_ms(start)
            start = time.perf_counter()
            output = self.run_tensor(tensor)
            timings["model"] = elapsed_ms(start)
            start = time.perf_counter()
            segmentation = postprocess(output, info, self.metadata, threshold)
        timings["postprocess"] = elapsed_ms(start)
        return SegmentResult(segmentation, timings)

    def timed_run(self, tensor: np.ndarray, runs: int) -> ModelTiming:
        """One warm-up call, whose output is kept, then `runs` timed calls on the same tensor."""
        if runs < 1:
            raise ValueError(f"runs must be at least 1, got {runs}")
        start = time.perf_counter()
        output = self.run_tensor(tensor)
        warmup_ms = elapsed_ms(start)
        latencies = []
        for _ in range(runs):
            start = time.perf_counter()
            self.run_tensor(tensor)
            latencies.append(elapsed_ms(start))
        return ModelTiming(output, warmup_ms, latencies)
