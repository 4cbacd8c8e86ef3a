"""Synthetic shapes on textured, noisy, unevenly lit backgrounds, deterministic by seed.

Every sample has a class-index mask (0 background, 1.. one per shape class) and an
instance-id mask (0 background, 1.. one per object). Some objects touch or overlap their
neighbours, which is where plain connected components fail and watershed must separate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from unet.runtime.errors import UserError

SHAPE_CLASSES = ("disc", "square", "triangle")


@dataclass
class SyntheticSample:
    """image: (H, W) or (H, W, 3) uint8; class_mask: (H, W) uint8; instance_labels: (H, W) uint16."""

    image: np.ndarray
    class_mask: np.ndarray
    instance_labels: np.ndarray


@dataclass(frozen=True)
class SyntheticSpec:
    """A reproducible synthetic dataset; training records it in the metadata to regenerate splits.

    `objects` (min, max) shapes per image, of `radius` (min, max) as a fraction of the shorter
    side. `dark_fraction` of the images have objects darker than their background (like
    stained tissue); the rest have brighter ones (like fluorescence). A new object touches
    one already placed with chance `touching`, at a distance of (1 - `overlap`) to 1 times the
    sum of the two radii; no two objects come closer than that, so none is hidden.
    """

    count: int = 240
    seed: int = 0
    size: tuple[int, int] = (128, 128)
    channels: int = 1
    shapes: tuple[str, ...] = ("disc",)
    objects: tuple[int, int] = (3, 9)
    radius: tuple[float, float] = (0.06, 0.14)
    touching: float = 0.5
    dark_fraction: float = 0.2
    overlap: float = 0.2

    def __post_init__(self) -> None:
        unknown = sorted(set(self.shapes) - set(SHAPE_CLASSES))
        if unknown:
            raise UserError(f"unknown shape classes {unknown}; choose from {SHAPE_CLASSES}")
        if self.channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("size", "shapes", "objects", "radius"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticSpec:
        return cls(**data)


PLACEMENT_TRIES = 50


def make_sample(rng: np.random.Generator, spec: SyntheticSpec | None = None) -> SyntheticSample:
    """One image drawn with `rng` as `spec` describes (its count and seed are not used here).

    An object that finds no place in PLACEMENT_TRIES attempts is left out.
    """
    spec = spec or SyntheticSpec()
    size, shapes, overlap, radius = spec.size, spec.shapes, spec.overlap, spec.radius
    height, width = size
    class_mask = np.zeros(size, dtype=np.uint8)
    instance_labels = np.zeros(size, dtype=np.uint16)
    placed: list[tuple[float, float, float]] = []
    count = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
    short_side = min(height, width)
    for instance_id in range(1, count + 1):
        shape_index = int(rng.integers(len(shapes)))
        object_radius = float(rng.uniform(*radius)) * short_side
        wants_contact = bool(placed) and rng.random() < spec.touching
        for _ in range(PLACEMENT_TRIES):
            if wants_contact:
                # Touch (or slightly overlap) an object already placed.
                anchor_y, anchor_x, anchor_radius = placed[int(rng.integers(len(placed)))]
                angle = rng.uniform(0, 2 * math.pi)
                distance = (anchor_radius + object_radius) * rng.uniform(1.0 - overlap, 1.0)
                centre_y = anchor_y + distance * math.sin(angle)
                centre_x = anchor_x + distance * math.cos(angle)
            else:
                centre_y = rng.uniform(object_radius, height - object_radius)
                centre_x = rng.uniform(object_radius, width - object_radius)
            if _overlaps_at_most(centre_y, centre_x, object_radius, placed, overlap):
                break
        else:
            continue
        object_mask = _draw_shape(
            shapes[shape_index], size, centre_y, centre_x, object_radius, rng.uniform(0, 2 * math.pi)
        )
        if not object_mask.any():
            continue
        placed.append((centre_y, centre_x, object_radius))
        class_mask[object_mask] = shape_index + 1
        instance_labels[object_mask] = instance_id
    instance_labels = _relabel_sequential(instance_labels)
    image = _render(rng, instance_labels, spec.channels, spec.dark_fraction)
    return SyntheticSample(image, class_mask, instance_labels)


def _overlaps_at_most(
    centre_y: float, centre_x: float, radius: float, placed: list[tuple[float, float, float]], overlap: float
) -> bool:
    """No centre closer than (1 - overlap) times the sum of radii: objects touch, never hide."""
    return all(
        math.hypot(centre_y - y, centre_x - x) >= (1.0 - overlap) * (radius + r) - 1e-6
        for y, x, r in placed
    )


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Ids 1..N with no gaps (an object fully hidden by later ones loses its id)."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0].astype(np.uint16)


def _draw_shape(
    shape: str, size: tuple[int, int], cy: float, cx: float, radius: float, angle: float
) -> np.ndarray:
    canvas = Image.new("L", (size[1], size[0]), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "disc":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
    else:
        corners = 4 if shape == "square" else 3
        outer = radius * (1.15 if shape == "square" else 1.3)
        points = [
            (cx + outer * math.cos(angle + 2 * math.pi * k / corners),
             cy + outer * math.sin(angle + 2 * math.pi * k / corners))
            for k in range(corners)
        ]
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(size), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-9)


def _render(
    rng: np.random.Generator, instance_labels: np.ndarray, channels: int, dark_fraction: float
) -> np.ndarray:
    """Paint background and objects in [0, 1], light it unevenly, add noise, quantise to uint8."""
    height, width = instance_labels.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = _smooth_noise(rng, (height, width), sigma=min(height, width) / 12)
    lighting = (
        1.0
        + rng.uniform(-0.35, 0.35) * (yy / height - 0.5)
        + rng.uniform(-0.35, 0.35) * (xx / width - 0.5)
    )
    background_level = rng.uniform(0.15, 0.55)
    contrast = rng.uniform(0.25, 0.45) * (-1 if rng.random() < dark_fraction else 1)
    colour_direction = rng.uniform(0.4, 1.0, size=3) if channels == 3 else np.ones(1)
    background_colour = rng.uniform(0.5, 1.0, size=3) if channels == 3 else np.ones(1)
    image = np.empty((height, width, channels), dtype=np.float32)
    for c in range(channels):
        image[..., c] = background_level * background_colour[c] + 0.06 * texture
    object_texture = _smooth_noise(rng, (height, width), sigma=2.0)
    for instance_id in range(1, int(instance_labels.max()) + 1):
        inside = instance_labels == instance_id
        own_contrast = contrast * rng.uniform(0.75, 1.25)
        for c in range(channels):
            image[..., c][inside] += own_contrast * colour_direction[c] + 0.04 * object_texture[inside]
    image *= lighting[..., None]
    image += rng.normal(0, rng.uniform(0.01, 0.05), size=image.shape)
    image = np.clip(image, 0, 1)
    pixels = np.round(image * 255).astype(np.uint8)
    return pixels[..., 0] if channels == 1 else pixels


def make_dataset(spec: SyntheticSpec) -> list[SyntheticSample]:
    """`spec.count` samples; sample i depends only on (seed, i), so subsets are reproducible."""
    return [make_sample(np.random.default_rng([spec.seed, index]), spec) for index in range(spec.count)]


def write_folder(dest: str | Path, spec: SyntheticSpec, labels: str = "class") -> Path:
    """Write a folder dataset (images/, masks/) of PNGs; labels "class" or "instance" ids."""
    if labels not in ("class", "instance"):
        raise ValueError(f"labels must be 'class' or 'instance', got {labels!r}")
    dest = Path(dest)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    for index, sample in enumerate(make_dataset(spec)):
        stem = f"shapes_{spec.seed}_{index:04d}"
        Image.fromarray(sample.image).save(dest / "images" / f"{stem}.png")
        mask = sample.class_mask if labels == "class" else sample.instance_labels
        Image.fromarray(mask).save(dest / "masks" / f"{stem}.png")
    return dest
