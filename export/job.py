"""The export's state: its settings, what every step shares, and a converted variant.

What it measured is an `export.report.ExportReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.gate import GateVerdict, gate
from export.report import ExportReport
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
