"""The names of model variants and backends, defined once for export, runtime, reports and the app.

A backend has one identifier (`litert-int8`, `litert-int8-1thread`, `keras-float32`), used as
a key in reports and JSON, and one display label (`LiteRT int8`, `LiteRT int8, 1 thread`,
`Keras float32`), used in tables and the app; both come from a `BackendKind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VARIANTS = ("float32", "float16", "dynamic", "int8", "uint8", "int8-float-io", "portable")
DEFAULT_VARIANTS = ("float32", "float16", "int8", "int8-float-io", "portable")
# Integer variants: calibrated and gated on accuracy. int8 and uint8 take and give integers;
# int8-float-io computes in int8 but takes and gives float32, so a runtime without int8
# tensors (LiteRT.js in the browser) can feed it. portable is int8-float-io behind its own
# preprocessing: raw RGB bytes in (export/portable.py), for MediaPipe and phone apps.
QUANTISED_VARIANTS = ("int8", "uint8", "int8-float-io", "portable")
PORTABLE_VARIANT = "portable"
# The browser's variant, measured against uint8 I/O in LiteRT.js (README, "In the browser").
BROWSER_VARIANT = "int8-float-io"
# What assets/ ships: float16 runs no faster than float32 on a CPU (LiteRT widens its weights
# at load) and the 25 MB budget holds the browser's and the portable variants instead.
SHIPPED_VARIANTS = ("float32", "int8", "int8-float-io", "portable")

ENGINE_LABELS = {"keras": "Keras", "litert": "LiteRT", "onnxruntime": "ONNX Runtime"}


@dataclass(frozen=True)
class BackendKind:
    """What runs a model: an engine, a variant, and a thread count (None: all cores)."""

    engine: str
    variant: str = "float32"
    threads: int | None = None

    @property
    def id(self) -> str:
        suffix = f"-{self.threads}thread" if self.threads else ""
        return f"{self.engine}-{self.variant}{suffix}"

    @property
    def label(self) -> str:
        threads = "" if not self.threads else f", {self.threads} thread" + ("s" if self.threads > 1 else "")
        return f"{ENGINE_LABELS[self.engine]} {self.variant}{threads}"


KERAS = BackendKind("keras")


def litert(variant: str, threads: int | None = None) -> BackendKind:
    return BackendKind("litert", variant, threads)


def variant_of(path: str | Path) -> str:
    """`X.int8.tflite` -> "int8"; a `.tflite` without a variant in its name -> "tflite"."""
    parts = Path(path).name.split(".")
    if len(parts) >= 3 and parts[-2] in VARIANTS:
        return parts[-2]
    return "tflite"


def variant_path(model_path: str | Path, variant: str) -> Path:
    """`dir/X.keras` (or `dir/X.json`) -> `dir/X.<variant>.tflite`."""
    path = Path(model_path)
    return path.with_name(f"{model_stem(path)}.{variant}.tflite")


def model_stem(model_path: str | Path) -> str:
    """The stem shared by a model's files: `X.keras`, `X.<variant>.tflite`, `X.tflite`, `X.json` -> `X`."""
    name = Path(model_path).name
    for suffix in (".keras", ".json", ".tflite"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    base, _, variant = name.rpartition(".")
    return base if base and variant in VARIANTS else name
