"""The nuclei simulator, its recipe, training on several folders, and the classical baseline."""

import dataclasses

import numpy as np
import pytest
from PIL import Image
from skimage.measure import label, regionprops

from unet.data.nuclei_sim import NucleiSpec, make_nuclei_dataset, make_nuclei_sample
from unet.runtime.classical import ClassicalParams, otsu_watershed
from unet.runtime.errors import UserError
from unet.runtime.instance_metrics import instance_scores

SMALL = NucleiSpec(count=3, seed=5, size=(128, 128), diameter=(10.0, 14.0))


def test_simulated_nuclei_are_reproducible_by_seed_and_index():
    first, again = make_nuclei_dataset(SMALL), make_nuclei_dataset(SMALL)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.instance_labels, b.instance_labels)
    alone = make_nuclei_sample(np.random.default_rng([SMALL.seed, 2]), SMALL)
    assert np.array_equal(alone.image, first[2].image)
    other = make_nuclei_dataset(dataclasses.replace(SMALL, seed=6))
    assert not np.array_equal(other[0].image, first[0].image)


def test_simulated_labels_are_exact_one_piece_per_nucleus_ids_without_gaps():
    for sample in make_nuclei_dataset(dataclasses.replace(SMALL, count=4, cluster=0.9)):
        ids = np.unique(sample.instance_labels)
        assert sample.image.dtype == np.uint16 and sample.instance_labels.dtype == np.uint16
        assert np.array_equal(ids, np.arange(ids.max() + 1))
        assert len(sample.brightness) == ids.max()
        for region in regionprops(sample.instance_labels):
            assert label(region.image, connectivity=1).max() == 1


def test_simulated_nuclei_touch_span_the_brightness_range_and_keep_their_size():
    spec = NucleiSpec(count=1, seed=11, size=(256, 256), diameter=(12.0, 12.0), cluster=0.9,
                      brightness_spread=12.0, coverage=(0.4, 0.4))
    sample = make_nuclei_dataset(spec)[0]
    assert sample.brightness.max() / sample.brightness.min() >= 10
    diameters = [r.equivalent_diameter_area for r in regionprops(sample.instance_labels)]
    assert 9 <= np.median(diameters) <= 14
    # Touching nuclei: plain connected components merge some of them.
    assert label(sample.instance_labels > 0, connectivity=1).max() < sample.instance_labels.max()


def test_simulated_brightness_follows_the_labels():
    spec = NucleiSpec(count=1, seed=3, size=(128, 128), diameter=(16.0, 16.0), defocus=0.0, haze=0.0,
                      background=(0.0, 0.0), gradient=0.0, cluster=0.0, photons=(3000.0, 3000.0))
    sample = make_nuclei_dataset(spec)[0]
    image, labels = sample.image.astype(float), sample.instance_labels
    means = [image[labels == i].mean() for i in range(1, labels.max() + 1)]
    assert np.corrcoef(means, sample.brightness)[0, 1] > 0.95
    assert image[labels == 0].mean() < min(means)


def test_a_generated_dataset_from_another_recipe_version_is_built_again(tmp_path, monkeypatch):
    from unet.data import recipes

    monkeypatch.setattr(recipes, "NUCLEI_SIM", SMALL)
    monkeypatch.setitem(recipes.RECIPES, "nuclei-sim",
                        dataclasses.replace(recipes.RECIPES["nuclei-sim"], expected_samples=SMALL.count))
    dest = recipes.fetch("nuclei-sim", tmp_path / "nuclei-sim")
    first = (dest / "images" / "sim_0000.png").stat().st_mtime_ns
    assert recipes.fetch("nuclei-sim", dest) == dest
    assert (dest / "images" / "sim_0000.png").stat().st_mtime_ns == first
    changed = dataclasses.replace(SMALL, haze=1.0)
    monkeypatch.setattr(recipes, "NUCLEI_SIM", changed)
    recipes.fetch("nuclei-sim", dest)
    assert "haze=1.0" in (dest / "SOURCE.md").read_text()
    rebuilt = np.asarray(Image.open(dest / "images" / "sim_0000.png"))
    assert np.array_equal(rebuilt, make_nuclei_dataset(changed)[0].image)


def test_simulator_refuses_impossible_settings():
    with pytest.raises(UserError, match="diameter range"):
        NucleiSpec(diameter=(20.0, 10.0))
    with pytest.raises(UserError, match="more than half"):
        NucleiSpec(size=(64, 64), diameter=(10.0, 40.0))
    assert NucleiSpec.from_dict(SMALL.to_dict()) == SMALL


def test_nuclei_sim_recipe_writes_a_folder_the_loader_reads(tmp_path, monkeypatch):
    from unet.data import recipes
    from unet.data.folder import load_folder

    monkeypatch.setattr(recipes, "NUCLEI_SIM", SMALL)
    monkeypatch.setitem(recipes.RECIPES, "nuclei-sim",
                        dataclasses.replace(recipes.RECIPES["nuclei-sim"], expected_samples=SMALL.count))
    dest = recipes.fetch("nuclei-sim", tmp_path / "nuclei-sim")
    samples = load_folder(dest)
    assert [s.stem for s in samples] == ["sim_0000", "sim_0001", "sim_0002"]
    assert np.array_equal(samples[1].labels, make_nuclei_dataset(SMALL)[1].instance_labels)
    assert "exact by construction" in (dest / "SOURCE.md").read_text()


def _discs(centres, radius, size=(96, 96), value=200):
    yy, xx = np.mgrid[: size[0], : size[1]]
    labels = np.zeros(size, np.int32)
    for index, (y, x) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = index
    return (np.where(labels > 0, value, 10)).astype(np.uint8), labels


def test_classical_baseline_separates_touching_discs():
    image, labels = _discs([(48, 30), (48, 52), (20, 75)], radius=11)
    predicted = otsu_watershed(image, ClassicalParams(smoothing_sigma=0.0, min_distance=7))
    assert predicted.max() == 3
    assert instance_scores(labels, predicted)["f1@0.5"] == 1.0


def test_several_data_folders_train_together_balanced_and_are_recorded(tmp_path):
    from unet.data.splits import recorded_split
    from unet.training.trainer import TrainConfig, build_metadata, load_training_data

    for name, count in (("real", 2), ("sim", 8)):
        for index in range(count):
            image, labels = _discs([(30 + index, 40)], radius=8 + index % 3)
            for folder, array in (("images", image), ("masks", labels.astype(np.uint16))):
                (tmp_path / name / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(tmp_path / name / folder / f"{name}{index}.png")
        (tmp_path / name / "SOURCE.md").write_text("test")
    config = TrainConfig(out=tmp_path / "out", data=[tmp_path / "real", tmp_path / "sim"], mode="instance",
                         input_size=64, validation_fraction=0.2, seed=1)
    data = load_training_data(config)
    stems = data.source["train_stems"] + data.source["validation_stems"]
    assert sorted(stems) == sorted([f"real/real{i}" for i in range(2)] + [f"sim/sim{i}" for i in range(8)])
    # The two real images are repeated to stand beside the simulated ones.
    assert len(data.train_images) > len(data.source["train_stems"])
    metadata = build_metadata(config, data)
    assert metadata.training["data"] == [(tmp_path / "real").as_posix(), (tmp_path / "sim").as_posix()]
    # 64 px crops of 96 px images are drawn at scales >= 2/3; radii 8-10 px -> diameters ~16-21.
    assert 10 < metadata.object_diameter < 25
    validation = recorded_split(metadata, "validation", fetch_missing=False)
    assert len(validation.images) == len(data.source["validation_stems"])


def test_balancing_repeats_the_smaller_folder():
    from unet.training.trainer import balanced_by_folder

    stems = ["real/a", "real/b"] + [f"sim/{i}" for i in range(10)]
    balanced = balanced_by_folder(stems)
    assert balanced.count("real/a") == 5 and balanced.count("sim/3") == 1
    assert balanced_by_folder(["a", "b"]) == ["a", "b"]


def test_instance_brightness_augmentation_scales_each_object_on_its_own():
    from unet.training.pipeline import scale_instance_brightness

    image, labels = _discs([(30, 30), (60, 60)], radius=10, value=255)
    normalised = (image.astype(np.float32) / 255)[..., None]
    scaled = scale_instance_brightness(normalised, labels, spread=10.0, rng=np.random.default_rng(0))
    first, second = scaled[labels == 1].mean(), scaled[labels == 2].mean()
    assert abs(first - second) > 0.05
    assert np.allclose(scaled[labels == 0], normalised[labels == 0])


def test_groups_place_touching_pairs_side_by_side_and_bright_beside_dim():
    spec = NucleiSpec(count=2, seed=21, size=(192, 192), diameter=(14.0, 16.0), group_size=2, overlap=0.1,
                      coverage=(0.2, 0.3), side_by_side=True, aspect=(2.5, 3.0), neighbour_contrast=8.0,
                      defocus=0.0)
    from unet.runtime.instance_metrics import touching_pairs

    for sample in make_nuclei_dataset(spec):
        pairs = touching_pairs(sample.instance_labels)
        regions = {region.label: region for region in regionprops(sample.instance_labels)}
        assert len(pairs) >= 0.4 * len(regions)
        elongated = [r for r in regions.values() if r.axis_minor_length > 0
                     and r.axis_major_length / r.axis_minor_length > 2.0]
        assert len(elongated) >= 0.6 * len(regions)
        ratios = [max(sample.brightness[a - 1], sample.brightness[b - 1])
                  / min(sample.brightness[a - 1], sample.brightness[b - 1]) for a, b in pairs]
        assert np.median(ratios) == pytest.approx(8.0, rel=0.01)


def test_a_group_of_one_is_refused_by_name():
    with pytest.raises(UserError, match="group_size"):
        NucleiSpec(group_size=1)
