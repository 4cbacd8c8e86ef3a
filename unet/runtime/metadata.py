"""The one metadata schema: written by training, carried by export, read by every runtime.

A model `X.keras` and its exports `X.float32.tflite`, `X.int8.tflite`, ... share the sidecar
`X.json`; every exported `.tflite` also carries the same JSON inside it (an associated file of
its TFLite metadata), read when no sidecar lies beside it. Nothing about input size,
channels, normalisation, classes or post-processing is repeated in code: every consumer
reads it from here.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unet.runtime.atomic import atomic_write_text
from unet.runtime.errors import UserError
from unet.runtime.variants import model_stem

SCHEMA_VERSION = 1
# Files packed into an exported .tflite beside its TFLite metadata (export/tflite_metadata.py).
EMBEDDED_METADATA_FILE = "unet_edge.json"
LABELS_FILE = "labels.txt"
MODES = ("semantic", "instance")
NORMALISATION_METHODS = ("percentile", "unit")

DEFAULT_COLOURS = [
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
]


class MetadataError(UserError):
    """A metadata file is missing, unreadable or inconsistent."""


@dataclass
class Normalisation:
    """How raw intensities become model inputs.

    percentile: per image, map the `low`-th percentile to 0 and the `high`-th to 1, then clip
        to [0, 1]; robust to exposure, bit depth and microscope settings.
    unit: divide by the dtype's maximum (255 for 8-bit, 65535 for 16-bit), clip to [0, 1].
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.method not in NORMALISATION_METHODS:
            raise MetadataError(
                f"normalisation method {self.method!r} is not one of {NORMALISATION_METHODS}"
            )
        if not 0.0 <= self.low < self.high <= 100.0:
            raise MetadataError(
                f"normalisation percentiles must satisfy 0 <= low < high <= 100, "
                f"got low={self.low}, high={self.high}"
            )


@dataclass
class InstanceParams:
    """Targets and post-processing of an instance model's classes: background, interior,
    boundary and, when core_fraction > 0, core (unet/runtime/instances.py).

    The seed class is the core when the model has one, else the interior; interior_threshold
    is the probability at which a pixel of it becomes a seed.
    marker_min_distance 0 seeds one object per connected seed region; a positive value
    seeds one per peak of the seed regions' distance transform, at least that many pixels
    apart, which also splits seed regions that touch where the predicted boundary has a gap.
    keep_unseeded: a foreground region that no seed's watershed reaches becomes an object of
    its own (True) or background (False). Such a region is either a faint object whose
    interior stayed under the threshold or a gap between objects that the model calls
    boundary; tuning on the training split chooses.
    """

    boundary_width: int = 2
    min_size: int = 16
    interior_threshold: float = 0.5
    foreground_threshold: float = 0.5
    marker_min_distance: int = 0
    keep_unseeded: bool = True
    core_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.core_fraction < 1.0:
            raise MetadataError(f"instance core_fraction must be in [0, 1), got {self.core_fraction}")

    @property
    def class_names(self) -> list[str]:
        return ["background", "interior", "boundary"] + (["core"] if self.core_fraction > 0 else [])


@dataclass
class ModelMetadata:
    """Everything a runtime needs to turn an image into a mask with a given model.

    input_size: (height, width) of the model input.
    num_classes: number of output classes. A model with one sigmoid output channel is a
        binary model with num_classes == 2 (background, foreground).
    object_diameter: instance models: the median object diameter, in model-input pixels, that
        training showed the model; runtimes rescale images to it on request.
    """

    input_size: tuple[int, int]
    channels: int
    class_names: list[str]
    class_colours: list[tuple[int, int, int]] = field(default_factory=list)
    mode: str = "semantic"
    normalisation: Normalisation = field(default_factory=Normalisation)
    threshold: float = 0.5
    instance: InstanceParams | None = None
    object_diameter: float | None = None
    name: str = "model"
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.channels not in (1, 3):
            raise MetadataError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.class_names) < 2:
            raise MetadataError(
                f"a segmentation model needs at least 2 class names, got {self.class_names}"
            )
        if self.mode not in MODES:
            raise MetadataError(f"mode {self.mode!r} is not one of {MODES}")
        if self.mode == "instance":
            if self.instance is None:
                self.instance = InstanceParams()
            if len(self.class_names) != len(self.instance.class_names):
                raise MetadataError(
                    f"an instance model with core_fraction {self.instance.core_fraction} has "
                    f"{len(self.instance.class_names)} classes ({', '.join(self.instance.class_names)}), "
                    f"got {len(self.class_names)}: {self.class_names}"
                )
        if self.object_diameter is not None and not self.object_diameter > 0:
            raise MetadataError(f"object_diameter must be positive, got {self.object_diameter}")
        if not self.class_colours:
            self.class_colours = default_colours(len(self.class_names))
        self.class_colours = [tuple(int(c) for c in colour) for colour in self.class_colours]
        if len(self.class_colours) != len(self.class_names):
            raise MetadataError(
                f"{len(self.class_names)} class names but {len(self.class_colours)} colours"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def output_channels(self) -> int:
        """1 for a binary sigmoid model, num_classes for a softmax model."""
        return 1 if self.num_classes == 2 and self.mode == "semantic" else self.num_classes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MetadataError(f"unknown metadata fields: {unknown}")
        if "normalisation" in data:
            data["normalisation"] = Normalisation(**data["normalisation"])
        if data.get("instance") is not None:
            data["instance"] = InstanceParams(**data["instance"])
        try:
            return cls(**data)
        except TypeError as error:
            raise MetadataError(f"metadata is missing a field: {error}") from error


def default_colours(count: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours, background black."""
    return [DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)] for i in range(count)]


def metadata_path_for(model_path: str | Path) -> Path:
    """The sidecar JSON of a model: `X.keras`, `X.<variant>.tflite` and `X.tflite` -> `X.json`."""
    path = Path(model_path)
    return path.with_name(model_stem(path) + ".json")


def model_metadata_files(folder: str | Path) -> list[Path]:
    """Metadata JSONs of the models one level below `folder` (those with a model file beside them)."""
    found = []
    for path in sorted(Path(folder).glob("*/*.json")):
        if path.with_suffix(".keras").is_file() or any(path.parent.glob(f"{path.stem}.*.tflite")):
            found.append(path)
    return found


def load_metadata(path: str | Path) -> ModelMetadata:
    """Read metadata from a JSON file, from the sidecar of a model file, or from inside a .tflite.

    The sidecar wins when both exist, so an older file keeps the metadata it was shipped with.
    """
    path = Path(path)
    if path.suffix == ".json":
        return _metadata_from_json(path)
    sidecar = metadata_path_for(path)
    if sidecar.is_file():
        return _metadata_from_json(sidecar)
    if path.suffix == ".tflite" and path.is_file():
        text = embedded_metadata_text(path)
        if text is not None:
            return _metadata_from_text(text, f"{path} ({EMBEDDED_METADATA_FILE} inside it)")
        raise MetadataError(f"{path} carries no metadata and has no sidecar {sidecar.name} beside it; "
                            "export it again with export/to_tflite.py, or put its JSON beside it")
    raise MetadataError(f"no metadata file at {sidecar} (expected the sidecar JSON of the model)")


def embedded_metadata_text(tflite_path: str | Path) -> str | None:
    """The metadata JSON packed inside an exported .tflite, or None if it carries none."""
    try:
        with zipfile.ZipFile(tflite_path) as archive:
            return archive.read(EMBEDDED_METADATA_FILE).decode("utf-8")
    except (zipfile.BadZipFile, KeyError):
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise MetadataError(f"cannot read the metadata inside {tflite_path}: {error}") from error


def _metadata_from_json(path: Path) -> ModelMetadata:
    if not path.is_file():
        raise MetadataError(f"no metadata file at {path} (expected the sidecar JSON of the model)")
    try:
        text = path.read_text()
    except OSError as error:
        raise MetadataError(f"cannot read metadata {path}: {error}") from error
    return _metadata_from_text(text, str(path))


def _metadata_from_text(text: str, source: str) -> ModelMetadata:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MetadataError(f"cannot read metadata {source}: {error}") from error
    if not isinstance(data, dict):
        raise MetadataError(f"{source}: metadata must be a JSON object, got {type(data).__name__}")
    try:
        return ModelMetadata.from_dict(data)
    except MetadataError as error:
        raise MetadataError(f"{source}: {error}") from error


def save_metadata(metadata: ModelMetadata, path: str | Path) -> Path:
    """Write metadata atomically; returns the path written."""
    path = Path(path)
    atomic_write_text(path, json.dumps(metadata.to_dict(), indent=2) + "\n")
    return path
