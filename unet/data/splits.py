"""Labelled sets for a model: a folder dataset, or the split its training recorded.

Instance models are scored against 3-class targets (background, interior, boundary) made
from instance ids with the model's own boundary width, and against the ids themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet.runtime.metadata import ModelMetadata


@dataclass
class LabelledSet:
    """Raw images, their class targets and, for instance models, their instance ids."""

    images: list[np.ndarray]
    targets: list[np.ndarray]
    instance_labels: list[np.ndarray] | None

    def subset(self, indices: list[int]) -> LabelledSet:
        return LabelledSet(
            [self.images[i] for i in indices], [self.targets[i] for i in indices],
            [self.instance_labels[i] for i in indices] if self.instance_labels is not None else None,
        )


def folder_stem(folder: str, stem: str) -> str:
    """How a stem is recorded when a model trains on several folders: `FOLDER/stem`."""
    return f"{folder}/{stem}"


def split_folder_stem(stem: str) -> tuple[str, str]:
    """`FOLDER/stem` -> (FOLDER, stem); a stem of a one-folder training -> ("", stem)."""
    folder, separator, own = stem.partition("/")
    return (folder, own) if separator else ("", stem)


def labelled_folder(metadata: ModelMetadata, data: Path, stems: list[str] | None = None) -> LabelledSet:
    """A folder dataset as targets for this model (instance ids become 3-class targets)."""
    from unet.data.folder import load_folder

    instance_mode = metadata.mode == "instance"
    samples = load_folder(data, None if instance_mode else metadata.num_classes, stems)
    return labelled(metadata, [s.image for s in samples], [s.labels for s in samples])


def recorded_split(
    metadata: ModelMetadata, split: str, limit: int | None = None, fetch_missing: bool = True
) -> LabelledSet | None:
    """The train or validation split recorded in the metadata at training time, if reproducible.

    Synthetic data is regenerated from its recorded spec; folder data is read again from the
    recorded folder, or from ./data/NAME, or (with `fetch_missing`) rebuilt by its dataset
    recipe. Returns None when none of these is available (e.g. a foreign model).
    """
    training = metadata.training
    stems = training.get(f"{split}_stems")
    if stems is None:
        return None
    stems = list(stems)[:limit] if limit else list(stems)
    if "synthetic" in training:
        from unet.data.synthetic import SyntheticSpec, make_dataset

        samples = make_dataset(SyntheticSpec.from_dict(training["synthetic"]))
        chosen = [samples[int(stem)] for stem in stems]
        labels = [s.instance_labels if metadata.mode == "instance" else s.class_mask for s in chosen]
        return labelled(metadata, [s.image for s in chosen], labels)
    recorded = training.get("data")
    if isinstance(recorded, list):
        return _recorded_folders_split(metadata, training, stems, fetch_missing)
    data = recorded_data_folder(recorded)
    if data is None and fetch_missing:
        data = fetch_recorded_data(training.get("dataset") or Path(recorded or "").name)
    if data is not None:
        return labelled_folder(metadata, data, stems)
    return None


def _recorded_folders_split(
    metadata: ModelMetadata, training: dict, stems: list[str], fetch_missing: bool
) -> LabelledSet | None:
    """A split over several folders, whose stems read `FOLDER/stem`, in the recorded order."""
    from unet.data.folder import load_folder

    by_folder: dict[str, list[str]] = {}
    for stem in stems:
        folder_name, own_stem = split_folder_stem(stem)
        by_folder.setdefault(folder_name, []).append(own_stem)
    loaded = {}
    for recorded in training["data"]:
        name = Path(recorded).name
        if name not in by_folder:
            continue
        data = recorded_data_folder(recorded)
        if data is None and fetch_missing:
            data = fetch_recorded_data(name)
        if data is None:
            return None
        for sample in load_folder(data, None if metadata.mode == "instance" else metadata.num_classes,
                                  by_folder[name]):
            loaded[folder_stem(name, sample.stem)] = sample
    chosen = [loaded[stem] for stem in stems]
    return labelled(metadata, [s.image for s in chosen], [s.labels for s in chosen])


def recorded_folders(training: dict) -> list[str]:
    """The training data folders as recorded: one (a string) or several (a list)."""
    recorded = training.get("data")
    if not recorded:
        return []
    return list(recorded) if isinstance(recorded, list) else [recorded]


def recorded_data_folder(recorded: str | None) -> Path | None:
    """A training data folder, as recorded or under ./data; None when it is not on disk."""
    if not recorded:
        return None
    for candidate in (Path(recorded), Path("data") / Path(recorded).name):
        if candidate.is_dir():
            return candidate
    return None


def fetch_recorded_data(recipe: str) -> Path | None:
    """Rebuild a training data folder into ./data/NAME with its dataset recipe, if it has one."""
    from unet.data.recipes import RECIPES, fetch

    if recipe in RECIPES:
        return fetch(recipe, Path("data") / recipe)
    return None


def labelled(metadata: ModelMetadata, images: list[np.ndarray], labels: list[np.ndarray]) -> LabelledSet:
    """Images with their label masks as targets for this model."""
    if metadata.mode == "instance":
        from unet.runtime.instances import instance_targets

        params = metadata.instance
        targets = [instance_targets(label, params.boundary_width, params.core_fraction) for label in labels]
        return LabelledSet(images, targets, labels)
    return LabelledSet(images, [label.astype(np.int64) for label in labels], None)
