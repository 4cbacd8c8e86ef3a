"""Simulated fluorescence nuclei with exact instance labels, deterministic by seed.

Each image is drawn the way a widefield microscope forms it:
    nuclei (textured, irregular ellipses; brightness spread over `brightness_spread`x; some
    out of focus; clusters that touch and overlap) + optional cytoplasm haze + background
    offset and gradient -> optical blur -> Poisson photon noise -> Gaussian read noise
    -> 16-bit camera counts.
Labels are the in-focus outlines, drawn before any blur or noise: exact by construction.
Where two nuclei overlap, the one drawn later owns the shared pixels (its signal adds, as
fluorescence does), and no nucleus is placed so close that it would be hidden.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unet.runtime.errors import UserError

PLACEMENT_TRIES = 30
CAMERA_OFFSET = 100.0
SMALLEST_DIAMETER = 4.0


@dataclass(frozen=True)
class NucleiSpec:
    """A reproducible simulated nuclei dataset.

    diameter: (min, max) of each image's typical nucleus diameter in pixels, drawn
        log-uniformly; single nuclei vary by `size_jitter` (relative) around it.
    coverage: (min, max) fraction of the image the nuclei aim to cover.
    brightness_spread: the brightest nucleus of an image is up to this many times the dimmest.
    aspect: (min, max) ratio of each nucleus's long axis to its short one.
    cluster: chance that a nucleus is placed touching one already placed; `overlap` is the
        deepest overlap, as a fraction of the two radii.
    group_size: 0 places nuclei freely (with `cluster`); n >= 2 places them in groups of n,
        each touching the one before it: pairs (2) or chains (3 and more).
    side_by_side: in groups, each nucleus takes the previous one's orientation and lies against
        its long side (elongated nuclei side by side).
    neighbour_contrast: in groups, every second nucleus is this many times dimmer than its
        neighbour (a bright nucleus beside a dim one).
    defocus: fraction of nuclei blurred by up to `defocus_sigma` pixels.
    blur: (min, max) Gaussian sigma of the whole image's optics, in pixels.
    photons: (min, max) expected photon count at the brightest nucleus, drawn log-uniformly.
    read_noise: (min, max) camera read noise, in photons.
    background: (min, max) background level relative to the brightest nucleus; `gradient` is
        the largest change of the background across the image, on the same scale.
    haze: fraction of images with a cytoplasm-like glow around the nuclei.
    """

    count: int = 300
    seed: int = 0
    size: tuple[int, int] = (256, 256)
    diameter: tuple[float, float] = (8.0, 36.0)
    size_jitter: float = 0.2
    aspect: tuple[float, float] = (1.0, 1.6)
    coverage: tuple[float, float] = (0.1, 0.45)
    brightness_spread: float = 12.0
    cluster: float = 0.5
    overlap: float = 0.25
    group_size: int = 0
    side_by_side: bool = False
    neighbour_contrast: float = 1.0
    defocus: float = 0.25
    defocus_sigma: float = 3.0
    blur: tuple[float, float] = (0.5, 1.5)
    photons: tuple[float, float] = (150.0, 3000.0)
    read_noise: tuple[float, float] = (1.0, 6.0)
    background: tuple[float, float] = (0.0, 0.15)
    gradient: float = 0.1
    haze: float = 0.3

    def __post_init__(self) -> None:
        for name in ("size", "diameter", "aspect", "coverage", "blur", "photons", "read_noise", "background"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        low, high = self.diameter
        if not SMALLEST_DIAMETER <= low <= high:
            raise UserError(
                f"diameter range must satisfy {SMALLEST_DIAMETER} <= min <= max, got {self.diameter}"
            )
        if high > min(self.size) / 2:
            raise UserError(f"diameter {high} px is more than half the image size {self.size}")
        if self.brightness_spread < 1:
            raise UserError(f"brightness_spread must be at least 1, got {self.brightness_spread}")
        if self.group_size == 1 or self.group_size < 0:
            raise UserError(f"group_size must be 0 (free placement) or at least 2, got {self.group_size}")
        if not 1.0 <= self.aspect[0] <= self.aspect[1] or self.neighbour_contrast < 1:
            raise UserError(f"aspect must satisfy 1 <= min <= max and neighbour_contrast >= 1, got "
                            f"{self.aspect} and {self.neighbour_contrast}")

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> NucleiSpec:
        return cls(**data)


@dataclass
class NucleiSample:
    """image: (H, W) uint16 camera counts; instance_labels: (H, W) uint16, 0 background;
    brightness: (N,) relative brightness of nucleus i + 1 (1.0 = the brightest possible)."""

    image: np.ndarray
    instance_labels: np.ndarray
    brightness: np.ndarray


@dataclass(frozen=True)
class _Nucleus:
    centre_y: float
    centre_x: float
    semi_major: float
    semi_minor: float
    angle: float
    brightness: float
    defocus_sigma: float

    @property
    def radius(self) -> float:
        return math.sqrt(self.semi_major * self.semi_minor)


def make_nuclei_sample(rng: np.random.Generator, spec: NucleiSpec) -> NucleiSample:
    """One image drawn with `rng` as `spec` describes (its count and seed are not used here)."""
    nuclei = _place_nuclei(rng, spec)
    instance_labels = np.zeros(spec.size, dtype=np.uint16)
    signal = np.zeros(spec.size, dtype=np.float32)
    kept: list[float] = []
    for nucleus in nuclei:
        patch, mask, (top, left) = _render_nucleus(rng, nucleus, spec.size)
        if not mask.any():
            continue
        rows = slice(top, top + mask.shape[0])
        cols = slice(left, left + mask.shape[1])
        signal[rows, cols] += patch
        instance_labels[rows, cols][mask] = len(kept) + 1
        kept.append(nucleus.brightness)
    instance_labels, brightness = _visible_instances(instance_labels, np.array(kept, dtype=np.float32))
    image = _form_image(rng, spec, signal, instance_labels)
    return NucleiSample(image, instance_labels, brightness)


def _place_nuclei(rng: np.random.Generator, spec: NucleiSpec) -> list[_Nucleus]:
    height, width = spec.size
    typical = math.exp(rng.uniform(math.log(spec.diameter[0]), math.log(spec.diameter[1])))
    target_area = rng.uniform(*spec.coverage) * height * width
    nuclei: list[_Nucleus] = []
    area = 0.0
    in_group = 0  # how many nuclei the current group holds (group placement only)
    while area < target_area and len(nuclei) < 2000:
        diameter = max(SMALLEST_DIAMETER, typical * math.exp(rng.normal(0.0, spec.size_jitter)))
        aspect = rng.uniform(*spec.aspect)
        semi_major, semi_minor = diameter / 2 * math.sqrt(aspect), diameter / 2 / math.sqrt(aspect)
        radius = diameter / 2
        if spec.group_size:
            in_group = in_group % spec.group_size
            anchor = nuclei[-1] if in_group else None
            wants_contact = anchor is not None
        else:
            anchor = None
            wants_contact = bool(nuclei) and rng.random() < spec.cluster
        angle = None
        for _ in range(PLACEMENT_TRIES):
            if wants_contact and spec.side_by_side:
                angle = anchor.angle
                direction = angle + math.pi / 2 * (1 if rng.random() < 0.5 else -1)
                distance = (anchor.semi_minor + semi_minor) * rng.uniform(1.0 - spec.overlap, 1.05)
            elif wants_contact:
                if not spec.group_size:
                    anchor = nuclei[int(rng.integers(len(nuclei)))]
                direction = rng.uniform(0, 2 * math.pi)
                distance = (anchor.radius + radius) * rng.uniform(1.0 - spec.overlap, 1.05)
            if wants_contact:
                centre_y = anchor.centre_y + distance * math.sin(direction)
                centre_x = anchor.centre_x + distance * math.cos(direction)
            else:
                centre_y, centre_x = rng.uniform(0, height), rng.uniform(0, width)
            checked = (n for n in nuclei if not (spec.side_by_side and n is anchor))
            if all(math.hypot(centre_y - n.centre_y, centre_x - n.centre_x)
                   >= (1.0 - spec.overlap) * (radius + n.radius) for n in checked):
                break
        else:
            area += math.pi * radius * radius  # no room left at this size: count it, move on
            in_group = 0
            continue
        brightness = math.exp(rng.uniform(-math.log(spec.brightness_spread), 0.0))
        if anchor is not None and spec.group_size and spec.neighbour_contrast > 1:
            brightness = anchor.brightness / spec.neighbour_contrast if in_group % 2 else \
                anchor.brightness * spec.neighbour_contrast
        defocus = rng.uniform(1.0, spec.defocus_sigma) if rng.random() < spec.defocus else 0.0
        orientation = rng.uniform(0, math.pi)
        nuclei.append(_Nucleus(centre_y, centre_x, semi_major, semi_minor,
                               orientation if angle is None else angle, brightness, defocus))
        area += math.pi * semi_major * semi_minor
        in_group += 1
    return nuclei


def _render_nucleus(
    rng: np.random.Generator, nucleus: _Nucleus, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The nucleus's signal and in-focus mask on the patch of the image it covers, and the patch's corner."""
    margin = nucleus.semi_major * 1.3 + 3 * nucleus.defocus_sigma + 2
    top = max(0, math.floor(nucleus.centre_y - margin))
    left = max(0, math.floor(nucleus.centre_x - margin))
    bottom = min(size[0], math.ceil(nucleus.centre_y + margin) + 1)
    right = min(size[1], math.ceil(nucleus.centre_x + margin) + 1)
    if bottom <= top or right <= left:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), bool), (top, left)
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
    dy, dx = yy - nucleus.centre_y, xx - nucleus.centre_x
    cos, sin = math.cos(nucleus.angle), math.sin(nucleus.angle)
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    rho = np.sqrt((along / nucleus.semi_major) ** 2 + (across / nucleus.semi_minor) ** 2)
    # An irregular outline: the ellipse's radius wobbles with two low harmonics of the angle.
    theta = np.arctan2(across, along)
    outline = 1.0 + sum(rng.uniform(0, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
                        for k in (2, 3))
    mask = rho <= outline
    # Chromatin: smooth noise from fine to coarse, bright chromocentres and dark nucleoli, on a
    # profile that is flat, domed or rimmed. Real nuclei (e.g. stem cells at 40 px) are this
    # textured; a model that never saw it calls the dark patches boundary.
    texture_sigma = max(0.7, nucleus.radius / rng.uniform(3.0, 8.0))
    texture = ndimage.gaussian_filter(rng.standard_normal(rho.shape).astype(np.float32), texture_sigma)
    texture /= texture.std() + 1e-6
    relative = np.clip(rho / outline, 0.0, 1.0)
    dome = rng.uniform(-0.15, 0.3)
    profile = 1.0 - dome + dome * np.sqrt(1.0 - relative**2)
    spots = np.zeros(rho.shape, np.float32)
    for strength in [rng.uniform(0.4, 1.2) for _ in range(rng.integers(0, 5))] + \
            [-rng.uniform(0.2, 0.5) for _ in range(rng.integers(0, 3))]:
        spot_y = nucleus.centre_y + rng.uniform(-0.6, 0.6) * nucleus.semi_minor
        spot_x = nucleus.centre_x + rng.uniform(-0.6, 0.6) * nucleus.semi_minor
        spot_radius = nucleus.radius * rng.uniform(0.08, 0.25)
        spots += strength * np.exp(-((yy - spot_y) ** 2 + (xx - spot_x) ** 2) / (2 * spot_radius**2))
    variation = 1.0 + rng.uniform(0.05, 0.4) * texture + spots
    patch = nucleus.brightness * profile * np.clip(variation, 0.2, None) * mask
    if nucleus.defocus_sigma > 0:
        patch = ndimage.gaussian_filter(patch, nucleus.defocus_sigma)
    return np.clip(patch, 0.0, None).astype(np.float32), mask, (top, left)


def _visible_instances(instance_labels: np.ndarray, brightness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids 1..N of the nuclei that kept pixels, each one connected piece (stray fragments cleared)."""
    from skimage.measure import label as connected_components
    from skimage.segmentation import relabel_sequential

    cleaned = np.zeros_like(instance_labels)
    for index, region in enumerate(ndimage.find_objects(instance_labels), start=1):
        if region is None:
            continue
        own = instance_labels[region] == index
        pieces = connected_components(own, connectivity=1)
        if pieces.max() > 1:
            own = pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1
        cleaned[region][own] = index
    relabelled, forward, _ = relabel_sequential(cleaned)
    present = np.unique(cleaned[cleaned > 0])
    order = np.argsort(forward[present])
    return relabelled.astype(np.uint16), brightness[present[order] - 1]


def _form_image(
    rng: np.random.Generator, spec: NucleiSpec, signal: np.ndarray, instance_labels: np.ndarray
) -> np.ndarray:
    height, width = spec.size
    if rng.random() < spec.haze and instance_labels.any():
        typical = math.sqrt((instance_labels > 0).sum() / max(1, instance_labels.max()))
        glow = ndimage.gaussian_filter(signal, typical * rng.uniform(0.5, 1.0))
        signal = signal + rng.uniform(0.15, 0.4) * glow / (glow.max() + 1e-6) * signal.max()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(direction) * (xx / width - 0.5) + math.sin(direction) * (yy / height - 0.5))
    background = rng.uniform(*spec.background) + rng.uniform(0, spec.gradient) * ramp
    expected = signal + np.clip(background, 0.0, None)
    expected = ndimage.gaussian_filter(expected, rng.uniform(*spec.blur))
    photons = math.exp(rng.uniform(math.log(spec.photons[0]), math.log(spec.photons[1])))
    counts = rng.poisson(np.clip(expected, 0.0, None) * photons).astype(np.float32)
    counts += rng.normal(0.0, rng.uniform(*spec.read_noise), size=counts.shape)
    return np.clip(np.round(counts + CAMERA_OFFSET), 0, 65535).astype(np.uint16)


def make_nuclei_dataset(spec: NucleiSpec) -> list[NucleiSample]:
    """`spec.count` samples; sample i depends only on (seed, i), so subsets are reproducible."""
    return [make_nuclei_sample(np.random.default_rng([spec.seed, index]), spec)
            for index in range(spec.count)]
