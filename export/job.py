"""The export's state: its settings, what every step shares, what it measured, and a converted variant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.gate import GateVerdict, gate
from unet.data.splits import LabelledSet
from unet.runtime.metadata import ModelMetadata
from unet.runtime.preprocess import Segmentation
from unet.runtime.segmenter import Segmenter


@dataclass
class ExportOptions:
    """Every export setting, and the one place its default is defined (the command line reads them)."""

    variants: tuple[str, ...]
    calib: Path | None = None
    calib_n: int = 200
    eval_data: Path | None = None
    eval_n: int = 64
    max_iou_drop: float = 0.02
    float_layers: tuple[str, ...] = ()
    latency_runs: int = 30
    worst_layers: int = 8
    command: str = "python export/to_tflite.py"
    rewrite: bool = True
    search_float_layers: bool = False
    search_max_size_ratio: float = 0.6
    search_max_latency_ratio: float = 1.0
    min_pixel_agreement: float = 0.995
    float_tensors: tuple[str, ...] = ()

    def gate(self, report: ExportReport) -> GateVerdict:
        return gate(report, self.max_iou_drop, self.min_pixel_agreement)


@dataclass
class ExportReport:
    """What an export measured, each field filled by one step; `to_dict` is NAME.export.json.

    variants: one row per converted variant (file, size, accuracy, agreement, graph, ...);
    rewrites, worst_layers, float_layer_search and latency: what those steps found (None: not
    run); checks: the gate's verdict (GateVerdict.record).
    """

    model: str
    command: str
    tensorflow: str
    machine: dict
    held_out: dict
    keras: dict
    variants: dict[str, dict] = field(default_factory=dict)
    rewrites: dict | None = None
    worst_layers: list[dict] | None = None
    float_layer_search: dict | None = None
    latency: dict | None = None
    checks: dict | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict) -> ExportReport:
        """A report read back from NAME.export.json (fields it lacks stay empty)."""
        known = {f.name for f in dataclasses.fields(cls)}
        defaults = {"command": "", "tensorflow": "", "machine": {}, "held_out": {}, "keras": {}}
        return cls(**{**defaults, **{key: value for key, value in data.items() if key in known}})


@dataclass
class ExportJob:
    """Everything the steps share: the model, its metadata, the images and the Keras reference."""

    model_path: Path
    model: object
    metadata: ModelMetadata
    had_metadata: bool
    options: ExportOptions
    calibration: list[np.ndarray]
    held_out: LabelledSet | None
    images: list[np.ndarray]
    reference: Segmenter
    reference_masks: list[Segmentation] = field(default_factory=list)

    def representative(self):
        for tensor in self.calibration:
            yield [tensor]


@dataclass
class ConvertedVariant:
    variant: str
    final_path: Path
    staged_path: Path
    tflite_bytes: bytes
    convert_seconds: float
    preprocessing_bytes: bytes | None = None
