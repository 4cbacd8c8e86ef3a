"""One runtime layer for every backend: image -> preprocess -> backend -> postprocess.

A backend only knows how to run a float32 tensor (1, h, w, C) and return probabilities
(1, h, w, K). Quantised LiteRT models quantise their input and dequantise their output with
the scale and zero-point stored in the model itself. Importing this module does not import
TensorFlow; the Keras backend imports it when it is built.
"""

from __future__ import annotations

import os
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet.imageio import ImageSource, read_image
from unet.metadata import ModelMetadata, load_metadata
from unet.preprocess import (
    Segmentation,
    postprocess,
    preprocess,
    segment_probabilities,
)


class ModelLoadError(ValueError):
    """A model file is missing, corrupt, or does not fit its metadata."""


class Backend:
    """Runs a model on one preprocessed tensor. Subclasses set `name` and implement `_run`."""

    name = "backend"
    path: Path

    def __init__(self) -> None:
        # Interpreters and tf.functions are not safe to call from several threads at once.
        self._lock = threading.Lock()

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """(1, h, w, C) float32 in [0, 1] -> (1, h, w, K) float32 probabilities."""
        with self._lock:
            return self._run(tensor)

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size


class KerasBackend(Backend):
    """A `.keras` model called through a compiled tf.function (not model.predict)."""

    name = "keras-float32"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        import tensorflow as tf

        from unet.models import load_model

        self.path = Path(path)
        self.model = load_model_checked(self.path, load_model)
        self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        return np.asarray(self._call(tensor), dtype=np.float32)


def load_model_checked(path: Path, loader):
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a .keras model (a .keras file is a zip archive)")
    try:
        return loader(str(path))
    except Exception as error:
        raise ModelLoadError(f"cannot load model {path}: {type(error).__name__}: {error}") from error


def interpreter_class():
    """LiteRT's Interpreter, else tflite_runtime's, else TensorFlow's (deprecated)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            try:
                import tensorflow as tf
            except ImportError as error:
                raise ModelLoadError(
                    "no TFLite interpreter found: pip install ai-edge-litert "
                    "(or tflite-runtime on Python <= 3.11 with numpy<2)"
                ) from error
            Interpreter = tf.lite.Interpreter
    return Interpreter


@dataclass(frozen=True)
class Quantisation:
    """Affine quantisation of a tensor: real = scale * (q - zero_point)."""

    dtype: str
    scale: float
    zero_point: int

    @property
    def is_quantised(self) -> bool:
        return self.dtype in ("int8", "uint8") and self.scale > 0

    def quantise(self, values: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        quantised = np.round(values / self.scale) + self.zero_point
        return np.clip(quantised, info.min, info.max).astype(self.dtype)

    def dequantise(self, values: np.ndarray) -> np.ndarray:
        return (values.astype(np.float32) - self.zero_point) * np.float32(self.scale)

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


def _quantisation_of(detail: dict) -> Quantisation:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return Quantisation(np.dtype(detail["dtype"]).name, float(scale), int(zero_point))


class LiteRTBackend(Backend):
    """A `.tflite` model in LiteRT, with XNNPACK on `num_threads` threads."""

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        self.num_threads = num_threads or os.cpu_count() or 1
        interpreter = interpreter_class()
        try:
            self.interpreter = interpreter(model_path=str(self.path), num_threads=self.num_threads)
            self.interpreter.allocate_tensors()
        except Exception as error:
            raise ModelLoadError(f"cannot load TFLite model {self.path}: {error}") from error
        input_details = self.interpreter.get_input_details()
        output_details = self.interpreter.get_output_details()
        if len(input_details) != 1 or len(output_details) != 1:
            raise ModelLoadError(
                f"{self.path} has {len(input_details)} inputs and {len(output_details)} outputs; "
                "a segmentation model has one of each"
            )
        self._input_index = input_details[0]["index"]
        self._output_index = output_details[0]["index"]
        self.input_shape = tuple(int(v) for v in input_details[0]["shape"])
        self.output_shape = tuple(int(v) for v in output_details[0]["shape"])
        self.input_quantisation = _quantisation_of(input_details[0])
        self.output_quantisation = _quantisation_of(output_details[0])
        self.name = "litert-" + variant_of(self.path)

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        if tuple(tensor.shape) != self.input_shape:
            raise ValueError(f"{self.path} takes input {self.input_shape}, got {tensor.shape}")
        if self.input_quantisation.is_quantised:
            tensor = self.input_quantisation.quantise(tensor)
        self.interpreter.set_tensor(self._input_index, tensor)
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self._output_index)
        if self.output_quantisation.is_quantised:
            return self.output_quantisation.dequantise(output)
        return output.astype(np.float32, copy=False)


def variant_of(path: Path) -> str:
    """`X.int8.tflite` -> "int8"; a plain `X.tflite` -> "float32" unless told otherwise."""
    from unet.metadata import VARIANT_NAMES

    parts = path.name.split(".")
    if len(parts) >= 3 and parts[-2] in VARIANT_NAMES:
        return parts[-2]
    return "tflite"


def open_backend(path: str | Path, num_threads: int | None = None) -> Backend:
    """A backend for a `.keras` or `.tflite` file."""
    path = Path(path)
    if path.suffix == ".keras":
        return KerasBackend(path)
    if path.suffix == ".tflite":
        return LiteRTBackend(path, num_threads)
    raise ModelLoadError(f"{path}: expected a .keras or .tflite model file")


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
        timings["decode"] = _elapsed_ms(start)
        if tile:
            from unet.tiling import tiled_probabilities

            start = time.perf_counter()
            probabilities, model_ms = tiled_probabilities(pixels, self.metadata, self.run_tensor)
            timings["model"] = model_ms
            timings["preprocess"] = _elapsed_ms(start) - model_ms
            start = time.perf_counter()
            segmentation = segment_probabilities(probabilities, self.metadata, threshold)
        else:
            start = time.perf_counter()
            tensor, info = preprocess(pixels, self.metadata)
            timings["preprocess"] = _elapsed_ms(start)
            start = time.perf_counter()
            output = self.run_tensor(tensor)
            timings["model"] = _elapsed_ms(start)
            start = time.perf_counter()
            segmentation = postprocess(output, info, self.metadata, threshold)
        timings["postprocess"] = _elapsed_ms(start)
        return SegmentResult(segmentation, timings)

    def timed_run(self, tensor: np.ndarray, runs: int) -> ModelTiming:
        """One warm-up call, whose output is kept, then `runs` timed calls on the same tensor."""
        if runs < 1:
            raise ValueError(f"runs must be at least 1, got {runs}")
        start = time.perf_counter()
        output = self.run_tensor(tensor)
        warmup_ms = _elapsed_ms(start)
        latencies = []
        for _ in range(runs):
            start = time.perf_counter()
            self.run_tensor(tensor)
            latencies.append(_elapsed_ms(start))
        return ModelTiming(output, warmup_ms, latencies)


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def percentiles_ms(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "runs": len(latencies),
    }

