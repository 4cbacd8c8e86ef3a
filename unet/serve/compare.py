"""Side-by-side comparison of two backends of one model: what the app shows, without the UI.

A `ModelCatalog` finds the shipped models (each `NAME.json` with its `.keras` and `.tflite`
files) and opens one `Segmenter` per (model, backend) on first use. `compare` runs one image
through both backends via the shared preprocess/postprocess and returns overlays, a
disagreement map, a latency and agreement table and a JSON summary.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unet.runtime.backends import open_backend
from unet.runtime.errors import UserError
from unet.runtime.evaluation import agreement
from unet.runtime.metadata import ModelMetadata, load_metadata, model_metadata_files
from unet.runtime.overlay import disagreement_overlay, segmentation_overlay
from unet.runtime.preprocess import Segmentation, postprocess, preprocess
from unet.runtime.scale import ScaleChoice, scale_for_diameter
from unet.runtime.segmenter import Segmenter
from unet.runtime.timing import percentiles_ms
from unet.runtime.variants import BROWSER_VARIANT, DEFAULT_VARIANTS, KERAS, litert, variant_path

# The backends the app offers, in the order it lists them.
BACKEND_ORDER = (KERAS, *(litert(variant) for variant in DEFAULT_VARIANTS))


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


@dataclass
class ShippedModel:
    name: str
    metadata: ModelMetadata
    files: dict[str, Path]

    @property
    def backends(self) -> list[str]:
        """Display labels of the backends this model has files for, in BACKEND_ORDER."""
        return list(self.files)

    def default_pair(self) -> tuple[str, str]:
        """Keras float32 (or the first backend) against LiteRT int8 (or the last)."""
        labels = self.backends
        int8 = litert("int8").label
        return (KERAS.label if KERAS.label in labels else labels[0],
                int8 if int8 in labels else labels[-1])

    @property
    def summary(self) -> str:
        metadata = self.metadata
        classes = ", ".join(metadata.class_names[1:]) if metadata.mode == "semantic" else "objects"
        height, width = metadata.input_size
        return (f"{self.name}: {metadata.mode} segmentation of {classes}, {height}x{width}x"
                f"{metadata.channels} input. {metadata.description}")


class ModelCatalog:
    """The models under a folder (`*/NAME.json`), with one Segmenter per backend, made on demand."""

    def __init__(self, root: Path, num_threads: int | None = None) -> None:
        self.root = Path(root)
        self.num_threads = num_threads
        self.models: dict[str, ShippedModel] = {}
        self._segmenters: dict[tuple[str, str], Segmenter] = {}
        self._lock = threading.Lock()
        keras_ok = tensorflow_available()
        for metadata_path in model_metadata_files(self.root):
            metadata = load_metadata(metadata_path)
            files = {}
            for kind in BACKEND_ORDER:
                if kind == KERAS:
                    path = metadata_path.with_suffix(".keras")
                    if not keras_ok:
                        continue
                else:
                    path = variant_path(metadata_path, kind.variant)
                if path.is_file():
                    files[kind.label] = path
            if files:
                name = metadata.name or metadata_path.stem
                self.models[name] = ShippedModel(name, metadata, files)

    def model(self, name: str) -> ShippedModel:
        if name not in self.models:
            raise UserError(f"Unknown model {name!r}; choose one of {', '.join(self.models)}.")
        return self.models[name]

    def segmenter(self, model_name: str, backend: str) -> Segmenter:
        model = self.model(model_name)
        if backend not in model.files:
            raise UserError(f"backend {backend!r} is not available for {model_name}; "
                            f"choose from {', '.join(model.backends)}")
        key = (model_name, backend)
        with self._lock:
            if key not in self._segmenters:
                opened = open_backend(model.files[backend], self.num_threads)
                self._segmenters[key] = Segmenter(opened, model.metadata)
            return self._segmenters[key]

    def browser_file_size(self, model_name: str) -> int:
        """Bytes of the model's browser variant, the file the visitor's device runs."""
        files = self.model(model_name).files
        return variant_path(next(iter(files.values())), BROWSER_VARIANT).stat().st_size

    def warm_up(self) -> None:
        """Open every backend once so the first request does not pay for loading."""
        for name, model in self.models.items():
            for backend in model.backends:
                self.segmenter(name, backend)


@dataclass
class BackendResult:
    backend: str
    segmentation: Segmentation
    overlay: np.ndarray
    latency: dict
    file_size: int


@dataclass
class Comparison:
    results: list[BackendResult]
    disagreement: Image.Image
    agreement: dict
    summary: dict
    notes: list[str] = field(default_factory=list)

    def table(self) -> list[list]:
        """One `table_row` per backend."""
        return [table_row(result.backend, result.latency["p50_ms"], result.latency["p95_ms"],
                          result.file_size, result.segmentation.instance_count) for result in self.results]


def table_headers(metadata: ModelMetadata) -> list[str]:
    """The latency table's columns: the instance count only for instance models."""
    instances = ["instances"] if metadata.mode == "instance" else []
    return ["backend", "p50 ms", "p95 ms", "file size", *instances]


def table_row(backend: str, p50_ms: float, p95_ms: float, size_bytes: int, instances: int | None) -> list:
    """One row of the latency table, under `table_headers`."""
    row = [backend, round(p50_ms, 2), round(p95_ms, 2), f"{size_bytes / 1024:.0f} KiB"]
    return row if instances is None else [*row, instances]


def agreement_sentence(agreed: dict) -> str:
    """How two segmentations agree, as the page says it: pixels, mean IoU, and matched instances."""
    return (f"{100 * agreed['pixel_agreement']:.2f}% of pixels agree, mean IoU {agreed['mean_iou']:.4f}"
            + (f", matched-instance F1 {agreed['matched_instance_f1']:.4f}" if "matched_instance_f1" in agreed
               else ""))


def compare(
    catalog: ModelCatalog,
    image: np.ndarray,
    model_name: str,
    backends: tuple[str, str],
    threshold: float | None = None,
    opacity: float = 0.5,
    timed_runs: int = 10,
    object_diameter: float | None = None,
    auto_scale: bool = False,
    flips: bool = False,
) -> Comparison:
    """Segment `image` with two backends of one model and measure both on equal terms.

    Latency is one model call on the model-sized tensor. With a scale option both backends
    segment at the same scale: auto-scale measures it with backend A's first pass. flips: both
    backends average their probabilities over the image's mirror images (`unet.runtime.flips`).
    """
    metadata = catalog.model(model_name).metadata
    timed_runs = max(1, int(timed_runs))
    scale, scaled = None, {}
    if auto_scale:
        segmenter_a = catalog.segmenter(model_name, backends[0])
        first = segmenter_a.segment(image, threshold, auto_scale=True, flips=flips)
        scale = first.scale
        if scale.passes == 2:
            scaled[backends[0]] = first.segmentation
    elif object_diameter is not None:
        scale = ScaleChoice("given", scale_for_diameter(metadata, object_diameter), object_diameter)
    results = []
    for backend in backends:
        segmenter = catalog.segmenter(model_name, backend)
        tensor, info = preprocess(image, metadata, segmenter.backend.input_encoding)
        # The warm-up call's output is the one segmented: no extra model call.
        timing = segmenter.timed_run(tensor, timed_runs)
        if backend in scaled:
            segmentation = scaled[backend]
        elif scaled:  # backend A's second pass chose the scale; B runs at exactly that factor
            segmentation = segmenter.segment_at(image, scale, threshold, flips)
        elif object_diameter is not None or flips:
            segmentation = segmenter.segment(image, threshold, object_diameter=object_diameter,
                                             flips=flips).segmentation
        else:
            segmentation = postprocess(timing.output, info, metadata, threshold)
        overlay = segmentation_overlay(image, segmentation, metadata.class_colours, opacity)
        latency = {**percentiles_ms(timing.latencies_ms), "warmup_ms": timing.warmup_ms}
        results.append(BackendResult(backend, segmentation, overlay, latency, segmenter.backend.file_size))
    first, second = results
    agreed = agreement(metadata, [first.segmentation], [second.segmentation])
    disagreement = disagreement_overlay(image, first.segmentation.class_mask, second.segmentation.class_mask)
    summary = {
        "model": model_name,
        "mode": metadata.mode,
        "image_size": [int(image.shape[1]), int(image.shape[0])],
        "backends": [
            {"name": r.backend, "p50_ms": r.latency["p50_ms"], "p95_ms": r.latency["p95_ms"],
             "runs": r.latency["runs"], "warmup_ms": r.latency["warmup_ms"], "file_size_bytes": r.file_size,
             "class_pixels": np.bincount(r.segmentation.class_mask.ravel(),
                                         minlength=metadata.num_classes).tolist(),
             **({"instance_count": r.segmentation.instance_count}
                if r.segmentation.instance_labels is not None else {})}
            for r in results
        ],
        "agreement": agreed,
        "scale": scale.to_dict() if scale else {"method": "resize"},
        "flips": flips,
    }
    return Comparison(results, disagreement, agreed, summary)


@dataclass
class DeviceComparison:
    """The browser backend's masks beside a server backend's, drawn by the same code as theirs."""

    overlay: np.ndarray
    disagreement: Image.Image
    agreement: dict
    row: list
    summary: dict


def compare_device(
    catalog: ModelCatalog, image: np.ndarray, model_name: str, reference_backend: str, device,
    threshold: float | None = None, opacity: float = 0.5,
) -> DeviceComparison:
    """Set the visitor's on-device result (`browser.DeviceSegmentation`) against `reference_backend`.

    The reference segments the image as the browser did: resized to the model input, no scale option.
    """
    metadata = catalog.model(model_name).metadata
    reference = catalog.segmenter(model_name, reference_backend).segment(image, threshold).segmentation
    on_device = Segmentation(np.empty((0, 0, 0), np.float32), device.class_mask, device.instance_labels)
    agreed = agreement(metadata, [reference], [on_device])
    overlay = segmentation_overlay(image, on_device, metadata.class_colours, opacity)
    disagreement = disagreement_overlay(image, reference.class_mask, on_device.class_mask)
    row = table_row(device.backend, device.p50_ms, device.p95_ms, catalog.browser_file_size(model_name),
                    on_device.instance_count)
    summary = {"backend": device.backend, "p50_ms": device.p50_ms, "p95_ms": device.p95_ms,
               "reference": reference_backend, "agreement": agreed,
               **({"instance_count": on_device.instance_count} if metadata.mode == "instance" else {})}
    return DeviceComparison(overlay, disagreement, agreed, row, summary)
