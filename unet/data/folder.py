"""Folder datasets: `images/` and `masks/` matched by file stem, checked before anything runs.

    DIR/images/a.png  DIR/masks/a.png      (class indices 0..K-1, or instance ids)
    DIR/images/b.tif  DIR/masks/b.tif

Every problem in the folder is collected and reported at once, naming the files, so a user
fixes the dataset in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet.runtime.errors import UserError
from unet.runtime.imageio import IMAGE_SUFFIXES, ImageReadError, image_files, read_image, read_mask


class DatasetError(UserError):
    """The dataset folder is not usable; the message lists every offending file."""


@dataclass(frozen=True)
class SamplePaths:
    stem: str
    image: Path
    mask: Path


@dataclass
class Sample:
    """image: (H, W) or (H, W, 3) as stored; labels: (H, W) int64 class indices or instance ids."""

    stem: str
    image: np.ndarray
    labels: np.ndarray


def _files_by_stem(folder: Path) -> tuple[dict[str, Path], list[str]]:
    by_stem: dict[str, Path] = {}
    duplicates = []
    for path in image_files(folder):
        if path.stem in by_stem:
            duplicates.append(f"{by_stem[path.stem].name} and {path.name}")
        by_stem[path.stem] = path
    return by_stem, duplicates


def is_dsb2018_layout(root: str | Path) -> bool:
    """DSB2018: `<sample>/images/<sample>.png` and `<sample>/masks/*.png`, one mask per object."""
    root = Path(root)
    if (root / "images").is_dir():
        return False
    return any((child / "images").is_dir() and (child / "masks").is_dir() for child in root.iterdir()
               if child.is_dir())


def load_dsb2018(root: str | Path, stems: list[str] | None = None) -> list[Sample]:
    """Samples with instance ids built from the per-object binary masks (id = mask order + 1).

    Where object masks overlap, the later mask wins; a sample without masks is refused.
    """
    root = Path(root)
    problems, samples = [], []
    folders = sorted(c for c in root.iterdir() if c.is_dir() and (c / "images").is_dir())
    if stems is not None:
        folders = [f for f in folders if f.name in set(stems)]
    for folder in folders:
        images = image_files(folder / "images")
        masks = image_files(folder / "masks")
        if len(images) != 1 or not masks:
            problems.append(f"{folder.name}: expected one image and at least one mask, found "
                            f"{len(images)} image(s) and {len(masks)} mask(s)")
            continue
        try:
            image = read_image(images[0])
            labels = np.zeros(image.shape[:2], dtype=np.int64)
            for object_id, mask_path in enumerate(masks, start=1):
                mask = read_mask(mask_path)
                if mask.shape != labels.shape:
                    problems.append(f"size mismatch: {mask_path} is {mask.shape[1]}x{mask.shape[0]} but "
                                    f"the image is {labels.shape[1]}x{labels.shape[0]}")
                    break
                labels[mask > 0] = object_id
            else:
                samples.append(Sample(folder.name, image, labels))
        except ImageReadError as error:
            problems.append(str(error))
    if problems:
        raise DatasetError(_problem_list(root, problems))
    if not samples:
        raise DatasetError(f"{root} holds no DSB2018 samples (<sample>/images/, <sample>/masks/)")
    return samples


def scan_folder(root: str | Path) -> list[SamplePaths]:
    """Pair images with masks by stem; refuse unmatched or ambiguous files."""
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    missing = [str(d) for d in (images_dir, masks_dir) if not d.is_dir()]
    if missing:
        raise DatasetError(
            f"{root} is not a folder dataset: missing {', '.join(missing)} "
            "(expected images/ and masks/ with files matched by name)"
        )
    images, image_duplicates = _files_by_stem(images_dir)
    masks, mask_duplicates = _files_by_stem(masks_dir)
    problems = [f"two images share a stem: {d}" for d in image_duplicates]
    problems += [f"two masks share a stem: {d}" for d in mask_duplicates]
    problems += [f"image without mask: {images[s]}" for s in sorted(set(images) - set(masks))]
    problems += [f"mask without image: {masks[s]}" for s in sorted(set(masks) - set(images))]
    if problems:
        raise DatasetError(_problem_list(root, problems))
    if not images:
        raise DatasetError(f"{root} has no image files in images/ (looked for {' '.join(IMAGE_SUFFIXES)})")
    return [SamplePaths(stem, images[stem], masks[stem]) for stem in sorted(images)]


def load_folder(
    root: str | Path, num_classes: int | None = None, stems: list[str] | None = None
) -> list[Sample]:
    """Read and check every pair; with `num_classes`, labels must lie in 0..num_classes-1.

    Pass num_classes=None for instance-id masks (any non-negative ids). A folder in the
    DSB2018 layout is read as instance ids.
    """
    if Path(root).is_dir() and is_dsb2018_layout(root):
        if num_classes is not None:
            raise DatasetError(f"{root} is a DSB2018 (instance) dataset; train it with --mode instance")
        return load_dsb2018(root, stems)
    pairs = scan_folder(root)
    if stems is not None:
        by_stem = {pair.stem: pair for pair in pairs}
        absent = [stem for stem in stems if stem not in by_stem]
        if absent:
            raise DatasetError(_problem_list(root, [f"listed sample not found: {s}" for s in absent]))
        pairs = [by_stem[stem] for stem in stems]
    samples, problems = [], []
    for pair in pairs:
        try:
            image = read_image(pair.image)
            labels = read_mask(pair.mask)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        if image.shape[:2] != labels.shape:
            problems.append(
                f"size mismatch: {pair.image.name} is {image.shape[1]}x{image.shape[0]} but "
                f"{pair.mask.name} is {labels.shape[1]}x{labels.shape[0]}"
            )
            continue
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            expected = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            problems.append(f"mask values {low}..{high} outside {expected}: {pair.mask}")
            continue
        samples.append(Sample(pair.stem, image, labels))
    if problems:
        raise DatasetError(_problem_list(root, problems))
    return samples


def split_stems(stems: list[str], validation_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split by seed; at least one sample on each side."""
    if len(stems) < 2:
        raise DatasetError(f"need at least 2 samples to split train/validation, got {len(stems)}")
    if not 0.0 < validation_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in (0, 1), got {validation_fraction}")
    order = np.random.default_rng(seed).permutation(len(stems))
    validation_count = min(len(stems) - 1, max(1, round(len(stems) * validation_fraction)))
    validation = sorted(stems[i] for i in order[:validation_count])
    train = sorted(stems[i] for i in order[validation_count:])
    return train, validation


def _problem_list(root: Path, problems: list[str]) -> str:
    shown = problems[:20]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return f"dataset {root} has {len(problems)} problem(s):\n  " + "\n  ".join(shown) + more
