"""A probe, not a shipped path (#27): StarDist-style radial distances beside the nuclei model.

Every pixel of a nucleus predicts an object probability and its distances to the nucleus's
outline along N rays (Schmidt et al., 2018); nuclei are the polygons left by non-maximum
suppression. bench/results/merges.md ("StarDist-style radial distances" and after) reports
what these commands measured. The polygon steps come from the stardist package (its code
only: no image or model from stardist or csbdeep is used), which the kit does not depend on:

    pip install --no-deps -r requirements-probe.txt
    python -m bench.radial_probe train runs/radial --epochs 40 --lr 1e-3 [--crowded] [--rays 32] \
        [--from-scratch | --init-from runs/radial/radial.keras]   # the same command resumes
    python -m bench.radial_probe tune runs/radial/radial.keras [--crowded]
    python -m bench.radial_probe score runs/radial/radial.keras --settings 0.5:0.2,0.5:0.2:split [--crowded]
    python -m bench.radial_probe rays runs/radial/radial.keras
    python -m bench.radial_probe ideal [--rays 32]

The model is the shipped nuclei model plus, on its last decoder features (`dec1_relu2`), a 3x3
convolution of 64 channels (ReLU) feeding a sigmoid object probability and N linear ray
lengths in pixels (bias 7 px, about a trained radius). Targets: the shipped classes,
stardist's `edt_prob` and `star_dist` of each augmented crop's instance ids, which ride the
pipeline's per-pixel channel so that flips and rotations cannot turn the rays the wrong way.
Loss: the shipped cross-entropy + Dice, + binary cross-entropy on the probability, + 0.2 x the
ray error (mean absolute, weighted by the probability target), StarDist's weights.

A setting ending in `:seeded` or `:split` joins the polygons with the class head's outlines
(see `MODES`); `:split@R` keeps only the cuts along which the object probability dips below R
times the lower peak of the two parts (`deep_cuts_only`).

Scoring runs each image whole, in one call, at the scale the shipped model's default path
chose for it, and compares with that default path on `bench.model_selection`'s rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from unet.cli import run_cli

SHIPPED = Path("assets/nuclei/nuclei.keras")
FEATURES_LAYER = "dec1_relu2"
RAY_BIAS_PX = 7.0
RAY_LOSS_WEIGHT = 0.2
CROWDED_DATA = Path("data/nuclei-sim-crowded")
# With nuclei-sim-crowded added the split differs; this is the one BBBC007 image both
# validation splits hold (the other shipped one is a training image of the candidate).
SHARED_BBBC007_VALIDATION = "bbbc007/17P1_POS0011_D_1UL"


def scaled_size(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """(h, w) of an image of `shape` rescaled by `factor`, as the runtime's scaled path rounds it."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def recipe_config(crowded: bool):
    """The shipped model's recorded training command as a config (data, targets, augmentation),
    with `CROWDED_DATA` added if asked; the probe starts from the shipped weights instead."""
    from unet.runtime.metadata import load_metadata
    from unet.train import parse_args

    command = load_metadata(SHIPPED.with_suffix(".json")).training["command"]
    config = parse_args(shlex.split(command)[len(shlex.split("python -m unet.train")):])
    data = [*config.data, *([CROWDED_DATA] if crowded else [])]
    return dataclasses.replace(config, data=data, init_weights=None)


def build_radial_model(rays: int, base=None):
    """`base` (default: the shipped model) with the probability and ray heads: outputs
    (classes, probability, rays)."""
    import keras

    if base is None:
        base = keras.models.load_model(SHIPPED, compile=False)
    hidden = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="star_hidden")(
        base.get_layer(FEATURES_LAYER).output)
    probability = keras.layers.Conv2D(1, 1, activation="sigmoid", name="star_prob")(hidden)
    distances = keras.layers.Conv2D(rays, 1, name="star_dist",
                                    bias_initializer=keras.initializers.Constant(RAY_BIAS_PX))(hidden)
    return keras.Model(base.input, [base.output, probability, distances], name="nuclei_radial")


def radial_stream(config, rays: int, first_batch: int = 0):
    """Batches of (image, classes, probability target, ray targets) from batch `first_batch` of
    the recipe's stream, the shipped augmentation, and the metadata the recipe gives."""
    import tensorflow as tf
    from stardist.geometry import star_dist
    from stardist.utils import edt_prob

    from unet.training.pipeline import Augmentation, prepare_training_images, training_dataset
    from unet.training.trainer import build_metadata, load_training_data

    data = load_training_data(config)
    metadata = build_metadata(config, data)
    instance_ids = [labels.astype(np.float32) for labels in data.train_instances]
    augmentation = Augmentation(scale=tuple(config.scale_range),
                                instance_brightness=config.instance_brightness)
    stream = training_dataset(prepare_training_images(data.train_images, metadata), data.train_targets,
                              metadata.input_size, config.batch_size, config.seed, augmentation,
                              data.train_instances, metadata.normalisation, first_batch=first_batch,
                              pixel_weights=instance_ids)
    height, width = metadata.input_size

    def targets_of(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = [np.round(sample[..., 1]).astype(np.uint16) for sample in target]
        probability = np.stack([edt_prob(ids)[..., None] for ids in labels]).astype(np.float32)
        return probability, np.stack([star_dist(ids, rays) for ids in labels]).astype(np.float32)

    def with_targets(image, target):
        probability, distances = tf.numpy_function(targets_of, [target], [tf.float32, tf.float32])
        probability.set_shape([None, height, width, 1])
        distances.set_shape([None, height, width, rays])
        return image, target[..., :1], probability, distances

    return stream.map(with_targets, num_parallel_calls=2).prefetch(2), metadata


def train(out: Path, epochs: int, learning_rate: float, crowded: bool, rays: int, steps: int,
          seed: int, from_scratch: bool, init_from: Path | None = None) -> None:
    """from_scratch: the recipe's U-Net with fresh weights under the heads, not the shipped one;
    init_from: a radial model saved by an earlier run, to train on (a warm restart).

    The model, the optimizer (and so the learning-rate schedule's step) and the epoch are
    checkpointed in `out`/checkpoints after every epoch, and the epochs' losses in
    `out`/history.json; the same command resumes there, on the batches it would have seen."""
    import shutil

    import keras
    import tensorflow as tf

    from unet.runtime.atomic import atomic_path
    from unet.training.losses import crossentropy_dice_loss
    from unet.training.trainer import build_model

    keras.utils.set_random_seed(seed)
    config = recipe_config(crowded)
    checkpoints, history_path = out / "checkpoints", out / "history.json"
    latest = tf.train.latest_checkpoint(str(checkpoints))
    done = int(tf.train.load_variable(latest, "epoch/.ATTRIBUTES/VARIABLE_VALUE")) if latest else 0
    stream, metadata = radial_stream(config, rays, first_batch=done * steps)
    batches = iter(stream)
    if init_from is not None:
        model = keras.models.load_model(init_from, compile=False)
    else:
        model = build_radial_model(rays, build_model(config, metadata) if from_scratch else None)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps, alpha=0.1)
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build(model.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoints), max_to_keep=1)
    history = []
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        history = json.loads(history_path.read_text())[:done]
        print(f"resuming from {latest} after epoch {done}", flush=True)

    @tf.function
    def step(image, classes, probability, distances):
        with tf.GradientTape() as tape:
            predicted_classes, predicted_probability, predicted_distances = model(image, training=True)
            class_loss = crossentropy_dice_loss(classes, predicted_classes)
            probability_loss = tf.reduce_mean(
                keras.losses.binary_crossentropy(probability, predicted_probability))
            ray_loss = tf.reduce_mean(probability * tf.abs(distances - predicted_distances))
            loss = class_loss + probability_loss + RAY_LOSS_WEIGHT * ray_loss
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables, strict=True))
        return class_loss, probability_loss, ray_loss

    out.mkdir(parents=True, exist_ok=True)
    for number in range(done + 1, epochs + 1):
        start = time.perf_counter()
        sums = np.zeros(3)
        for _ in range(steps):
            sums += [float(value) for value in step(*next(batches))]
        class_loss, probability_loss, ray_loss = sums / steps
        history.append({"epoch": number, "class": class_loss, "probability": probability_loss,
                        "rays": ray_loss, "seconds": round(time.perf_counter() - start, 1)})
        with atomic_path(history_path) as temporary:
            temporary.write_text(json.dumps(history, indent=1) + "\n")
        epoch.assign(number)
        manager.save()
        print(json.dumps(history[-1]), flush=True)
    model.save(out / "radial.keras")
    shutil.rmtree(checkpoints)
    print(f"wrote {out / 'radial.keras'}")


class RadialRunner:
    """A trained radial model run on whole images at the shipped default path's scale."""

    def __init__(self, path: Path) -> None:
        import keras

        from unet.runtime.segmenter import Segmenter, SegmentOptions

        self.reference = Segmenter.from_path(SHIPPED)
        self.metadata = self.reference.metadata
        self.options = SegmentOptions.default_for(self.metadata).to_kwargs()
        trained = keras.models.load_model(path, compile=False)
        config = trained.get_config()
        config["layers"][0]["config"]["batch_shape"] = (None, None, None, self.metadata.channels)
        self.model = keras.Model.from_config(config)
        self.model.set_weights(trained.get_weights())

    def shipped_and_scale(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The shipped default path's instance labels and the scale it chose."""
        result = self.reference.segment(image, **self.options)
        return result.segmentation.instance_labels, result.scale.factor

    def outputs(self, image: np.ndarray, factor: float) -> RadialOutputs:
        """The model's outputs on the image scaled by `factor`."""
        from unet.runtime.imageio import resize_array
        from unet.runtime.preprocess import normalise_to_channels

        if factor != 1.0:
            image = resize_array(image.astype(np.float32), scaled_size(image.shape, factor),
                                 Image.Resampling.BILINEAR)
        pixels = normalise_to_channels(image, self.metadata)
        height, width = pixels.shape[:2]
        # Four poolings: each side a multiple of 16.
        padded = np.pad(pixels, ((0, -height % 16), (0, -width % 16), (0, 0)), mode="symmetric")
        classes, probability, distances = (np.asarray(output)[0, :height, :width]
                                           for output in self.model(padded[None], training=False))
        return RadialOutputs(classes, probability[..., 0], distances)

    def instances(self, outputs: RadialOutputs, size: tuple[int, int], setting: Setting) -> np.ndarray:
        """Instance ids at `size` from the polygons left by NMS at `setting`'s thresholds, objects
        under the shipped minimum size dropped. Its mode (see `MODES`) says how the class head's
        outlines take part."""
        from skimage.segmentation import watershed
        from stardist import polygons_to_label
        from stardist.nms import non_maximum_suppression

        from unet.runtime.imageio import resize_nearest
        from unet.runtime.instances import (
            foreground_of,
            instances_from_probabilities,
            sequential_without_small,
            with_unseeded_regions,
        )

        params = self.metadata.instance
        points, kept_probability, kept_distances = non_maximum_suppression(
            outputs.distances, outputs.probability, prob_thresh=setting.probability_threshold,
            nms_thresh=setting.nms_overlap)
        labels = polygons_to_label(kept_distances, points, outputs.probability.shape,
                                   prob=kept_probability).astype(np.int32)
        if setting.mode == "seeded":
            foreground = foreground_of(outputs.classes, params.foreground_threshold)
            labels = with_unseeded_regions(
                watershed(-outputs.probability, np.where(foreground, labels, 0), mask=foreground), foreground)
        elif setting.mode == "split":
            objects = instances_from_probabilities(outputs.classes, params)
            labels = split_by_polygons(objects, labels, points, outputs.probability, setting.dip_ratio)
        return resize_nearest(sequential_without_small(labels, params.min_size), size)


# How the polygons become instances: "" the polygons alone; "seeded" they seed a watershed of
# the class head's foreground (the class head draws the outlines, the rays only tell nuclei
# apart; foreground no polygon reaches becomes objects of its own); "split" the class head's
# objects stay, except that one holding the centres of two or more polygons is split among them.
MODES = ("", "seeded", "split")


def split_by_polygons(objects: np.ndarray, polygons: np.ndarray, centres: np.ndarray,
                      probability: np.ndarray, dip_ratio: float | None = None) -> np.ndarray:
    """Instance ids (h, w): each object of `objects` holding the (y, x) `centres` of two or more
    polygons is split among them, by a watershed of `probability` from the polygons' pixels
    inside it; every other object is kept as it is. Polygon i + 1 of `polygons` has centre i.
    With `dip_ratio`, a cut stays only where `probability` dips along it (see `deep_cuts_only`)."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    holder = objects[tuple(centres.T)]
    held = np.bincount(holder[holder > 0], minlength=objects.max() + 1)
    result = objects.astype(np.int32).copy()
    next_id = int(objects.max()) + 1
    for object_id, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None or held[object_id] < 2:
            continue
        inside = objects[box] == object_id
        seeds = np.flatnonzero(holder == object_id) + 1
        markers = np.where(inside & np.isin(polygons[box], seeds), polygons[box], 0)
        parts = watershed(-probability[box], markers, mask=inside)
        if dip_ratio is not None:
            parts = deep_cuts_only(parts, probability[box], dip_ratio)
        for part in np.unique(parts[parts > 0])[1:]:
            result[box][parts == part] = next_id
            next_id += 1
    return result


def deep_cuts_only(parts: np.ndarray, probability: np.ndarray, dip_ratio: float) -> np.ndarray:
    """`parts` (h, w ids, 0 outside) with every two touching parts joined whose shared border's
    mean `probability` reaches `dip_ratio` x the lower of their two peaks: a cut through a
    nucleus's middle, where the object probability stays high, is not a border between two."""
    from scipy import ndimage
    from skimage.graph import cut_threshold, rag_boundary

    peak = np.asarray(ndimage.maximum(probability, parts, index=np.arange(int(parts.max()) + 1)))
    borders = rag_boundary(parts, probability, connectivity=1)
    for first, second, border in borders.edges(data=True):
        # Each edge's weight becomes the border's dip below the lower peak; background never joins.
        lower_peak = min(peak[first], peak[second])
        border["weight"] = np.inf if 0 in (first, second) else 1.0 - border["weight"] / lower_peak
    # cut_threshold joins the edges below its threshold; a border that reaches the ratio joins too.
    joined = cut_threshold(parts, borders, np.nextafter(1.0 - dip_ratio, np.inf))
    return np.where(parts > 0, joined + 1, 0).astype(parts.dtype)


class RadialOutputs(NamedTuple):
    """A radial model's outputs on one image: classes (h, w, classes) softmax, object
    probability (h, w), ray lengths (h, w, rays) in pixels."""

    classes: np.ndarray
    probability: np.ndarray
    distances: np.ndarray


class Setting(NamedTuple):
    """How `RadialRunner.instances` turns polygons into instances; `dip_ratio` is
    `split_by_polygons`'s."""

    probability_threshold: float
    nms_overlap: float
    mode: str = ""
    dip_ratio: float | None = None

    def __str__(self) -> str:
        mode = self.mode + ("" if self.dip_ratio is None else f"@{self.dip_ratio}")
        return ":".join([str(self.probability_threshold), str(self.nms_overlap), *filter(None, [mode])])


def parse_settings(text: str) -> list[Setting]:
    """"0.5:0.2,0.5:0.2:split@0.7" -> [Setting(0.5, 0.2), Setting(0.5, 0.2, "split", 0.7)]."""
    settings = []
    for item in text.split(","):
        probability, overlap, *rest = item.split(":")
        mode, _, dip_ratio = (rest[0] if rest else "").partition("@")
        if len(rest) > 1 or mode not in MODES or (dip_ratio and mode != "split"):
            modes = "|".join(MODES[1:])
            raise ValueError(f"a setting is PROBABILITY:OVERLAP[:{modes}], split with an optional "
                             f"@DIP_RATIO, got {item!r}")
        ratio = float(dip_ratio) if dip_ratio else None
        settings.append(Setting(float(probability), float(overlap), mode, ratio))
    return settings


def tune(path: Path, settings: list[Setting], crowded: bool) -> None:
    """F1@0.5 of each setting on every third image of the candidate's training split, averaged
    over its folders as `unet.tune` averages them."""
    from bench.model_selection import counts_at_half, f1_from_counts
    from unet.data.splits import split_folder_stem
    from unet.training.trainer import _folder_samples, _split

    runner = RadialRunner(path)
    config = recipe_config(crowded)
    by_stem = _folder_samples(config)[0]
    chosen = _split(config, list(by_stem))[0][::3]
    scores: dict[Setting, list[float]] = {setting: [] for setting in settings}
    for folder in sorted({split_folder_stem(stem)[0] for stem in chosen}):
        counts: dict[Setting, list] = {setting: [] for setting in settings}
        for stem in (s for s in chosen if split_folder_stem(s)[0] == folder):
            image, labels = by_stem[stem]
            _, factor = runner.shipped_and_scale(image)
            outputs = runner.outputs(image, factor)
            for setting in settings:
                predicted = runner.instances(outputs, labels.shape, setting)
                counts[setting].append(counts_at_half([labels], [predicted])[0])
        for setting in settings:
            scores[setting].append(float(f1_from_counts(np.array(counts[setting]))))
        print(folder, {str(setting): round(scores[setting][-1], 3) for setting in settings}, flush=True)
    for setting, per_folder in scores.items():
        print(f"{setting}: mean over folders {np.mean(per_folder):.3f}")


def score(path: Path, settings: list[Setting], crowded: bool, images: int) -> None:
    """Each setting's F1@0.5 minus the shipped default path's, per row, with the share of
    touching pairs split, the missed nuclei by kind, and the shape of what was found."""
    from bench.generalisation import BBBC007_ROW, trained_simulations
    from bench.model_selection import (
        DIFFERENCE_MEAN_ROW,
        bbbc007_validation_pairs,
        counts_at_half,
        development_sets,
        differences,
        f1_from_counts,
        scratch_assay_pairs,
    )
    from unet.runtime.instance_errors import MISSED_KINDS, ErrorCounts, error_counts
    from unet.runtime.instance_metrics import touching_pairs_split

    runner = RadialRunner(path)
    bbbc007_images, bbbc007_labels = bbbc007_validation_pairs(runner.reference)
    if crowded:
        stems = [s for s in runner.metadata.training["validation_stems"] if s.startswith("bbbc007/")]
        keep = [i for i, stem in enumerate(stems) if stem == SHARED_BBBC007_VALIDATION]
        bbbc007_images, bbbc007_labels = [bbbc007_images[i] for i in keep], [bbbc007_labels[i] for i in keep]
    rows = {BBBC007_ROW: (bbbc007_images, bbbc007_labels),
            "scratch assay (real, never trained on)": scratch_assay_pairs(),
            **development_sets(images, trained=trained_simulations(runner.metadata))}
    names = ["shipped", *settings]
    counts = {row: {name: [] for name in names} for row in rows}
    split = {name: [0, 0] for name in names}
    errors = {name: ErrorCounts() for name in names}
    shapes: dict = {name: {} for name in names}
    for row, (row_images, row_labels) in rows.items():
        for image, true in zip(row_images, row_labels, strict=True):
            shipped, factor = runner.shipped_and_scale(image)
            outputs = runner.outputs(image, factor)
            predictions = {"shipped": shipped}
            predictions.update({setting: runner.instances(outputs, true.shape, setting)
                                for setting in settings})
            for name, predicted in predictions.items():
                counts[row][name].append(counts_at_half([true], [predicted])[0])
                shapes[name].setdefault(row, []).append(found_shapes(true, predicted))
                if row.startswith("simulated"):
                    done, pairs = touching_pairs_split(true, predicted)
                    split[name] = [split[name][0] + done, split[name][1] + pairs]
                    errors[name] = errors[name] + error_counts(true, predicted)
    counts = {row: {name: np.array(row_counts) for name, row_counts in by_name.items()}
              for row, by_name in counts.items()}
    shipped_f1 = {row: float(f1_from_counts(by_name["shipped"])) for row, by_name in counts.items()}
    shipped_f1[DIFFERENCE_MEAN_ROW] = float(np.mean(list(shipped_f1.values())))
    for row, by_setting in differences(counts, names).items():
        print(f"| {row} | {shipped_f1[row]:.3f} | " + " | ".join(
            "{:+.3f} ({:+.3f} to {:+.3f})".format(*by_setting[setting]) for setting in settings) + " |")
    for name in names:
        missed = errors[name]
        print(f"{name}: touching pairs split {split[name][0] / max(1, split[name][1]):.1%}; of all simulated "
              "nuclei, missed as " + ", ".join(f"{kind} {getattr(missed, kind) / max(1, missed.labelled):.1%}"
                                             for kind in MISSED_KINDS))
        for row, per_image in shapes[name].items():
            if "elongated" in row or "crowded" in row:
                ratios = np.concatenate([r for r, _ in per_image])
                pieces = np.concatenate([p for _, p in per_image])
                found = ratios > 0
                print(f"  {row[:40]}: area of the most overlapping object over the nucleus's, median "
                      f"{np.median(ratios[found]):.2f} (p10 {np.percentile(ratios[found], 10):.2f}, p90 "
                      f"{np.percentile(ratios[found], 90):.2f}); "
                      f"nuclei in 2+ pieces {np.mean(pieces >= 2):.1%}")


def found_shapes(true: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per true nucleus: the area of the predicted object overlapping it most over its own (0:
    none), and how many predicted objects have more than half their pixels inside it."""
    from unet.runtime.instance_metrics import overlap_counts

    overlaps = overlap_counts(true, predicted)
    true_areas, predicted_areas = overlaps.sum(axis=1), overlaps.sum(axis=0)
    inside = overlaps[1:, 1:]
    if inside.shape[1] == 0:
        return np.zeros(inside.shape[0]), np.zeros(inside.shape[0], int)
    best = inside.argmax(axis=1)
    ratios = np.where(inside.max(axis=1) > 0, predicted_areas[best + 1] / true_areas[1:], 0.0)
    return ratios, (inside > 0.5 * predicted_areas[None, 1:]).sum(axis=1)


def rays(path: Path, images: int) -> None:
    """At each true nucleus's centre (its largest distance to its edge), the predicted ray along
    the longest true ray over that true ray, and the object probability there."""
    from bench.generalisation import trained_simulations
    from bench.model_selection import development_sets
    from unet.runtime.imageio import resize_nearest

    runner = RadialRunner(path)
    for row, (row_images, row_labels) in development_sets(
            images, trained=trained_simulations(runner.metadata)).items():
        longest, centre_probability = [], []
        for image, labels in zip(row_images, row_labels, strict=True):
            _, factor = runner.shipped_and_scale(image)
            _, probability, distances = runner.outputs(image, factor)
            scaled = resize_nearest(labels.astype(np.int32), probability.shape)
            centres, centre_rays = true_centre_rays(scaled, distances.shape[-1])
            nuclei, along = np.arange(len(centres)), np.argmax(centre_rays, axis=1)
            predicted = distances[centres[:, 0], centres[:, 1]]
            longest.extend(predicted[nuclei, along] / centre_rays[nuclei, along])
            centre_probability.extend(probability[centres[:, 0], centres[:, 1]])
        print(f"{row}: longest ray predicted/true median {np.median(longest):.2f} (p10 "
              f"{np.percentile(longest, 10):.2f}); probability at the centre median "
              f"{np.median(centre_probability):.2f}, "
              f"under 0.5 {np.mean(np.array(centre_probability) < 0.5):.1%}",
              flush=True)


def ideal(ray_count: int, images: int) -> None:
    """What rays can draw at best: per row, the F1@0.5 of the true nuclei redrawn as polygons of
    their true rays from their centres, and the longest true ray, at the shipped default path's
    scale; then the longest true rays of the training folders at their own size."""
    from bench.generalisation import trained_simulations
    from bench.model_selection import counts_at_half, development_sets, f1_from_counts
    from unet.data.folder import load_folder
    from unet.runtime.imageio import resize_nearest
    from unet.runtime.segmenter import Segmenter, SegmentOptions

    reference = Segmenter.from_path(SHIPPED)
    options = SegmentOptions.default_for(reference.metadata).to_kwargs()
    for row, (row_images, row_labels) in development_sets(
            images, trained=trained_simulations(reference.metadata)).items():
        counts, longest = [], []
        for image, labels in zip(row_images, row_labels, strict=True):
            factor = reference.segment(image, **options).scale.factor
            scaled = resize_nearest(labels.astype(np.int32), scaled_size(labels.shape, factor))
            redrawn, centre_rays = polygons_of_truth(scaled, ray_count)
            counts.append(counts_at_half([scaled], [redrawn])[0])
            longest.extend(centre_rays.max(axis=1))
        redrawn_f1 = f1_from_counts(np.array(counts))
        print(f"{row}: true nuclei as {ray_count}-ray polygons F1@0.5 {redrawn_f1:.3f}; "
              f"longest true ray median {np.median(longest):.1f} px, p95 {np.percentile(longest, 95):.1f}",
              flush=True)
    for folder in recipe_config(crowded=True).data:
        longest = np.concatenate([polygons_of_truth(sample.labels.astype(np.int32), ray_count)[1].max(axis=1)
                                  for sample in load_folder(folder)])
        print(f"{folder} at its own size: longest true ray median {np.median(longest):.1f} px, "
              f"p95 {np.percentile(longest, 95):.1f}, p99 {np.percentile(longest, 99):.1f}", flush=True)


def polygons_of_truth(labels: np.ndarray, ray_count: int) -> tuple[np.ndarray, np.ndarray]:
    """The label map redrawn from each nucleus's true rays at its centre, and those rays (n, rays)."""
    from stardist import polygons_to_label

    centres, centre_rays = true_centre_rays(labels, ray_count)
    return polygons_to_label(centre_rays, centres, labels.shape), centre_rays


def true_centre_rays(labels: np.ndarray, ray_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each nucleus's centre, the pixel farthest from its edge, (n, 2) as (y, x); and its true
    ray lengths there (n, rays), stardist's `star_dist`."""
    from scipy import ndimage
    from skimage.measure import regionprops
    from stardist.geometry import star_dist

    inside = ndimage.distance_transform_edt(labels > 0)
    centres = np.array([region.coords[np.argmax(inside[tuple(region.coords.T)])]
                        for region in regionprops(labels)]).reshape(-1, 2)
    return centres, star_dist(labels.astype(np.uint16), ray_count)[centres[:, 0], centres[:, 1]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.radial_probe", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train the radial heads beside the shipped model")
    train_parser.add_argument("out", type=Path)
    train_parser.add_argument("--epochs", type=int, default=40)
    train_parser.add_argument("--lr", type=float, default=1e-3)
    train_parser.add_argument("--steps", type=int, default=40, help="steps of 4 crops an epoch")
    train_parser.add_argument("--rays", type=int, default=32)
    train_parser.add_argument("--seed", type=int, default=0)
    start_from = train_parser.add_mutually_exclusive_group()
    start_from.add_argument("--from-scratch", action="store_true",
                            help="fresh weights in the recipe's U-Net instead of the shipped model's")
    start_from.add_argument("--init-from", type=Path,
                            help="a radial model saved by an earlier run, to train on (a warm restart)")
    for name, help_text in (("tune", "choose the thresholds on the training split"),
                            ("score", "compare with the shipped model on development data"),
                            ("rays", "predicted against true rays at nucleus centres")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("model", type=Path)
        sub.add_argument("--images", type=int, default=20, help="images per simulator setting")
        sub.add_argument("--settings", default="0.5:0.2",
                         help="PROBABILITY:OVERLAP[:seeded|:split[@DIP_RATIO]],...")
    ideal_parser = commands.add_parser("ideal", help="the true nuclei redrawn as ray polygons")
    ideal_parser.add_argument("--rays", type=int, default=32)
    ideal_parser.add_argument("--images", type=int, default=20, help="images per simulator setting")
    for sub in (train_parser, commands.choices["tune"], commands.choices["score"]):
        sub.add_argument("--crowded", action="store_true", help=f"add {CROWDED_DATA} to the training data")
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.out, args.epochs, args.lr, args.crowded, args.rays, args.steps, args.seed,
              args.from_scratch, args.init_from)
    elif args.command == "tune":
        tune(args.model, parse_settings(args.settings), args.crowded)
    elif args.command == "score":
        score(args.model, parse_settings(args.settings), args.crowded, args.images)
    elif args.command == "rays":
        rays(args.model, args.images)
    else:
        ideal(args.rays, args.images)
    return 0


if __name__ == "__main__":
    run_cli(main)
