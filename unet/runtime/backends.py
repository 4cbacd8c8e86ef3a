"""Backends: each runs a model on one preprocessed tensor, nothing else.

A backend takes a float32 tensor (1, h, w, C) in [0, 1] and returns float32 probabilities
(1, h, w, K); a portable model (preprocessing in its graph) takes the image's 8-bit RGB
values instead, as its `input_encoding` says. Quantised LiteRT models quantise their input
and dequantise their output with the scale and zero-point stored in the model itself.
Importing this module does not import TensorFlow; the Keras backend imports it when one is built.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet.runtime.errors import UserError
from unet.runtime.metadata import ModelMetadata
from unet.runtime.preprocess import NORMALISED, input_encoding, preprocess
from unet.runtime.variants import KERAS, BackendKind, litert, variant_of

# What `Backend.run` is, and what tiling and test-time flips wrap: a (1, h, w, C) tensor in, the
# model's dequantised output out.
ModelCall = Callable[[np.ndarray], np.ndarray]


class ModelLoadError(UserError):
    """A model file is missing, corrupt, or does not fit its metadata."""


class Backend:
    """Runs a model on one preprocessed tensor. Subclasses set `kind` and implement `_run`."""

    kind: BackendKind
    path: Path
    input_encoding: str = NORMALISED

    def __init__(self) -> None:
        # Interpreters and tf.functions are not safe to call from several threads at once.
        self._lock = threading.Lock()

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """(1, h, w, C) float32 in [0, 1] (RGB8: (1, h, w, 3) uint8) -> (1, h, w, K) float32 probabilities."""
        with self._lock:
            return self._run(tensor)

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.kind.id

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size


class KerasBackend(Backend):
    """A `.keras` model called through a compiled tf.function (not model.predict)."""

    kind = KERAS

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        import tensorflow as tf

        from unet.training.models import load_model

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
        self.kind = litert(variant_of(self.path), 1 if self.num_threads == 1 else None)
        self.input_encoding = input_encoding(self.input_quantisation.dtype,
                                             self.input_quantisation.is_quantised, self.input_shape[-1])

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


def open_backend(path: str | Path, num_threads: int | None = None) -> Backend:
    """A backend for a `.keras` or `.tflite` file."""
    path = Path(path)
    if path.suffix == ".keras":
        return KerasBackend(path)
    if path.suffix == ".tflite":
        return LiteRTBackend(path, num_threads)
    raise ModelLoadError(f"{path}: expected a .keras or .tflite model file")




def model_call(backend: Backend, image: np.ndarray, metadata: ModelMetadata):
    """A no-argument-needed call of `backend` on `image` as that backend takes it, for timing.

    Returns f(_) -> output; the argument (what `interleaved_latency` passes to every runner) is
    ignored, so backends that take different tensors (a portable file's 8-bit RGB, a float
    file's normalised floats) are timed side by side on the same image, model call only.
    """
    tensor, _ = preprocess(image, metadata, backend.input_encoding)
    return lambda _: backend.run(tensor)
