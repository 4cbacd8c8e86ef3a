"""One path for every backend: image -> preprocess -> backend -> postprocess -> Segmentation."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unet.runtime.backends import Backend, ModelCall, ModelLoadError, open_backend
from unet.runtime.errors import UserError
from unet.runtime.flips import flip_averaged
from unet.runtime.imageio import ImageSource, read_image, resize_array
from unet.runtime.metadata import ModelMetadata, load_metadata
from unet.runtime.preprocess import Segmentation, postprocess, preprocess, segment_probabilities
from unet.runtime.scale import (
    ScaleChoice,
    median_diameter,
    needs_second_pass,
    scale_for_diameter,
    scale_for_measured_diameter,
    spread_magnification,
    trained_diameter,
)
from unet.runtime.timing import elapsed_ms


@dataclass
class ModelTiming:
    """Model calls on one tensor: the warm-up call's output and time, then the timed calls."""

    output: np.ndarray
    warmup_ms: float
    latencies_ms: list[float]


@dataclass(frozen=True)
class SegmentOptions:
    """How to segment, as the command lines and the app offer it (see `Segmenter.segment`)."""

    threshold: float | None = None
    tile: bool = False
    object_diameter: float | None = None
    auto_scale: bool = False
    flips: bool = False

    def to_kwargs(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def default_for(cls, metadata: ModelMetadata, threshold: float | None = None) -> SegmentOptions:
        """What the command lines do unless told otherwise.

        Semantic models: the whole image resized to the model input, one pass. Instance models:
        auto-scale, with a first pass at the image's own resolution. Objects keep their size in
        pixels when the field of view grows, so squeezing the image would shrink them: the nuclei
        model card's generalisation table (the 1024x1024 row) gives the scores of both ways.
        """
        if metadata.mode == "instance":
            return cls(threshold, tile=True, auto_scale=True)
        return cls(threshold)


@dataclass
class SegmentResult:
    segmentation: Segmentation
    timings_ms: dict[str, float] = field(default_factory=dict)
    scale: ScaleChoice | None = None


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
        probe, _ = preprocess(np.zeros((height, width), np.uint8), self.metadata, self.backend.input_encoding)
        try:
            output = self.backend.run(probe)
        except Exception as error:
            raise ModelLoadError(
                f"{self.backend.path} does not accept the input its metadata describes "
                f"{probe.shape} {probe.dtype}: {error}"
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
        self,
        image: ImageSource,
        threshold: float | None = None,
        tile: bool = False,
        object_diameter: float | None = None,
        auto_scale: bool = False,
        flips: bool = False,
    ) -> SegmentResult:
        """Segment one image.

        tile: run overlapping model-sized windows at full resolution.
        object_diameter: the objects' diameter in this image's pixels; the image is rescaled
            so they match the trained diameter, then tiled (see `unet.runtime.scale`).
        auto_scale: estimate that diameter with a first pass; a second pass runs only when
            the first pass's objects are off the trained diameter by more than
            AUTO_SCALE_TOLERANCE (unet.runtime.scale).
        flips: average the model's probabilities over the image and its mirror images
            (`unet.runtime.flips`), four model calls where one would do.
        """
        if object_diameter is not None and auto_scale:
            raise UserError("give an object diameter or ask for auto-scale, not both")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        pixels = image if isinstance(image, np.ndarray) else read_image(image)
        timings["decode"] = elapsed_ms(start)
        run = self._runner(flips)
        if object_diameter is not None:
            factor = scale_for_diameter(self.metadata, object_diameter)
            segmentation = self._segment_scaled(pixels, factor, threshold, timings, run)
            return SegmentResult(segmentation, timings, ScaleChoice("given", factor, object_diameter))
        if auto_scale:
            return self._segment_auto_scaled(pixels, threshold, tile, timings, run)
        if tile:
            segmentation = self._segment_scaled(pixels, 1.0, threshold, timings, run)
            return SegmentResult(segmentation, timings, ScaleChoice("tile", 1.0))
        segmentation = self._segment_resized(pixels, threshold, timings, run)
        return SegmentResult(segmentation, timings, ScaleChoice("resize", self._resize_factor(pixels)))

    def _runner(self, flips: bool) -> ModelCall:
        return (lambda tensor: flip_averaged(self.run_tensor, tensor)) if flips else self.run_tensor

    def _resize_factor(self, pixels: np.ndarray) -> float:
        (height, width), (input_h, input_w) = pixels.shape[:2], self.metadata.input_size
        return float(np.sqrt(input_h / height * input_w / width))

    def _segment_resized(self, pixels: np.ndarray, threshold: float | None, timings: dict, run: ModelCall
                         ) -> Segmentation:
        start = time.perf_counter()
        tensor, info = preprocess(pixels, self.metadata, self.backend.input_encoding)
        _add(timings, "preprocess", elapsed_ms(start))
        start = time.perf_counter()
        output = run(tensor)
        _add(timings, "model", elapsed_ms(start))
        start = time.perf_counter()
        segmentation = postprocess(output, info, self.metadata, threshold)
        _add(timings, "postprocess", elapsed_ms(start))
        return segmentation

    def _segment_scaled(
        self, pixels: np.ndarray, factor: float, threshold: float | None, timings: dict, run: ModelCall
    ) -> Segmentation:
        """Rescale by `factor`, run model-sized windows, bring the result back to the image size."""
        from unet.runtime.tiling import tiled_probabilities

        start = time.perf_counter()
        size = pixels.shape[:2]
        scaled = pixels
        if factor != 1.0:
            scaled_size = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
            scaled = resize_array(pixels, scaled_size, Image.Resampling.BILINEAR)
        probabilities, model_ms = tiled_probabilities(scaled, self.metadata, run,
                                                       encoding=self.backend.input_encoding)
        _add(timings, "model", model_ms)
        _add(timings, "preprocess", elapsed_ms(start) - model_ms)
        start = time.perf_counter()
        segmentation = segment_probabilities(probabilities, self.metadata, threshold, size)
        _add(timings, "postprocess", elapsed_ms(start))
        return segmentation

    def _segment_auto_scaled(
        self, pixels: np.ndarray, threshold: float | None, tile: bool, timings: dict, run: ModelCall
    ) -> SegmentResult:
        if self.metadata.mode != "instance":
            raise UserError("auto-scale measures objects, so it needs an instance model; "
                            f"{self.metadata.name!r} is {self.metadata.mode}")
        trained_diameter(self.metadata)
        factor = 1.0 if tile else self._resize_factor(pixels)
        if tile:
            first = self._segment_scaled(pixels, factor, threshold, timings, run)
        else:
            first = self._segment_resized(pixels, threshold, timings, run)
        objects = objects_to_measure(first)
        measured = median_diameter(objects)
        if measured is None:
            return SegmentResult(first, timings, ScaleChoice("auto", factor, measured, passes=1))
        at_scale = factor
        if needs_second_pass(self.metadata, measured * factor):
            at_scale = scale_for_measured_diameter(self.metadata, measured)
        magnification = spread_magnification(objects)
        if at_scale == factor and magnification == 1.0:
            return SegmentResult(first, timings, ScaleChoice("auto", factor, measured, passes=1))
        scale = ScaleChoice("auto", at_scale * magnification, measured, 2, magnification)
        second = self._segment_scaled(pixels, scale.factor, threshold, timings, run)
        return SegmentResult(second, timings, scale)

    def segment_at(self, pixels: np.ndarray, scale: ScaleChoice, threshold: float | None = None,
                   flips: bool = False) -> Segmentation:
        """Segment at a scale chosen before, by another backend of the same model say, so that
        both run at exactly the same factor."""
        return self._segment_scaled(pixels, scale.factor, threshold, {}, self._runner(flips))

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


def objects_to_measure(segmentation: Segmentation) -> np.ndarray:
    """The instances, and the foreground regions none of them covers, as auto-scale measures them.

    A model run at the wrong scale sees small nuclei as boundary only; with `keep_unseeded`
    off they get no instance, yet they are what the first pass must measure. Measured on
    instances alone, held-out simulated 5-7 px nuclei scored F1@0.5 0.496 with int8 against
    0.534 with float32 (the first passes measured different sizes); measured so, 0.527.
    """
    from unet.runtime.instances import BACKGROUND, with_unseeded_regions

    return with_unseeded_regions(segmentation.instance_labels, segmentation.class_mask != BACKGROUND)


def _add(timings: dict[str, float], stage: str, milliseconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + milliseconds
