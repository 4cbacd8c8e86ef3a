"""Train a U-Net: `python -m unet.train --synthetic --epochs 2 --out /tmp/x`.

Writes to --out: NAME.keras (best checkpoint by validation mean IoU), NAME.json (metadata),
history.csv, curves.png and evaluation.json. Everything is staged under temporary names and
renamed only when the run completes, so an interrupted run never replaces a good model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet.atomic import atomic_path, atomic_write_text
from unet.cli import run_cli
from unet.metadata import InstanceParams, ModelMetadata, Normalisation, portable_path, save_metadata


@dataclass
class TrainConfig:
    out: Path
    data: Path | None = None
    synthetic: bool = False
    synthetic_count: int = 240
    synthetic_shapes: tuple[str, ...] = ("disc",)
    synthetic_dark_fraction: float = 0.2
    synthetic_touching: float = 0.5
    synthetic_radius: tuple[float, float] = (0.06, 0.14)
    synthetic_objects: tuple[int, int] = (3, 9)
    mode: str = "semantic"
    architecture: str = "unet"
    input_size: int = 128
    channels: int | None = None
    class_names: list[str] | None = None
    depth: int = 3
    base_filters: int = 16
    batch_norm: bool = True
    dropout: float = 0.0
    upsampling: str = "transpose"
    loss: str = "ce_dice"
    epochs: int = 30
    batch_size: int = 8
    samples_per_epoch: int | None = None
    learning_rate: float = 1e-3
    validation_fraction: float = 0.2
    validation_prefix: str | None = None
    patience: int = 8
    seed: int = 0
    name: str = "model"
    description: str = ""
    boundary_width: int = 2
    min_instance_size: int = 16
    marker_min_distance: int = 0
    normalisation: str = "percentile"
    scale_range: tuple[float, float] = (0.7, 1.4)
    strategy: str = "none"
    verbose: int = 1
    extra_training_info: dict = field(default_factory=dict)


@dataclass
class TrainingData:
    """Raw train/validation images and their class targets, plus what metadata needs."""

    train_images: list[np.ndarray]
    train_targets: list[np.ndarray]
    validation_images: list[np.ndarray]
    validation_targets: list[np.ndarray]
    validation_instances: list[np.ndarray] | None
    class_names: list[str]
    channels: int
    source: dict


def _targets_for(config: TrainConfig, labels: list[np.ndarray]) -> list[np.ndarray]:
    if config.mode == "instance":
        from unet.instances import instance_targets

        return [instance_targets(label, config.boundary_width) for label in labels]
    return [label.astype(np.uint8) for label in labels]


def load_training_data(config: TrainConfig) -> TrainingData:
    """Synthetic shapes or a folder dataset, split into train and validation by seed."""
    from unet.folder import DatasetError, load_folder, split_stems

    if config.synthetic:
        from unet.synthetic import make_dataset

        channels = config.channels or 1
        samples = make_dataset(
            config.synthetic_count, seed=config.seed,
            size=(config.input_size, config.input_size), channels=channels,
            shapes=config.synthetic_shapes, dark_fraction=config.synthetic_dark_fraction,
            touching=config.synthetic_touching, radius=tuple(config.synthetic_radius),
            objects=tuple(config.synthetic_objects),
        )
        stems = [str(i) for i in range(len(samples))]
        train_stems, validation_stems = split_stems(stems, config.validation_fraction, config.seed)
        images = [s.image for s in samples]
        labels = [s.instance_labels if config.mode == "instance" else s.class_mask for s in samples]
        by_stem = dict(zip(stems, zip(images, labels, strict=True), strict=True))
        class_names = ["background", *config.synthetic_shapes]
        source = {
            "synthetic": {
                "count": config.synthetic_count, "seed": config.seed, "channels": channels,
                "shapes": list(config.synthetic_shapes),
                "dark_fraction": config.synthetic_dark_fraction,
                "touching": config.synthetic_touching,
                "radius": list(config.synthetic_radius),
                "objects": list(config.synthetic_objects),
                "size": [config.input_size, config.input_size],
            }
        }
    else:
        if config.data is None:
            raise DatasetError("give --data DIR (a folder with images/ and masks/) or --synthetic")
        num_classes = len(config.class_names) if config.class_names and config.mode == "semantic" else None
        samples = load_folder(config.data, num_classes=num_classes)
        stems = [s.stem for s in samples]
        if config.validation_prefix:
            validation_stems = [s for s in stems if s.startswith(config.validation_prefix)]
            train_stems = [s for s in stems if not s.startswith(config.validation_prefix)]
            if not validation_stems or not train_stems:
                raise DatasetError(
                    f"--val-prefix {config.validation_prefix!r} leaves {len(train_stems)} training "
                    f"and {len(validation_stems)} validation samples; both must be non-empty"
                )
        else:
            train_stems, validation_stems = split_stems(stems, config.validation_fraction, config.seed)
        by_stem = {s.stem: (s.image, s.labels) for s in samples}
        channels = config.channels or (3 if any(s.image.ndim == 3 for s in samples) else 1)
        if config.class_names:
            class_names = list(config.class_names)
        else:
            highest = max(int(s.labels.max()) for s in samples)
            class_names = ["background", *[f"class{i}" for i in range(1, max(highest, 1) + 1)]]
        source = {"data": portable_path(Path(config.data))}
        from unet.datasets import RECIPES

        if Path(config.data).name in RECIPES and (Path(config.data) / "SOURCE.md").is_file():
            source["dataset"] = Path(config.data).name
    if config.mode == "instance":
        class_names = ["background", "interior", "boundary"]
    source["train_stems"] = train_stems
    source["validation_stems"] = validation_stems
    train_labels = [by_stem[s][1] for s in train_stems]
    validation_labels = [by_stem[s][1] for s in validation_stems]
    return TrainingData(
        train_images=[by_stem[s][0] for s in train_stems],
        train_targets=_targets_for(config, train_labels),
        validation_images=[by_stem[s][0] for s in validation_stems],
        validation_targets=_targets_for(config, validation_labels),
        validation_instances=validation_labels if config.mode == "instance" else None,
        class_names=class_names,
        channels=channels,
        source=source,
    )


def build_metadata(config: TrainConfig, data: TrainingData) -> ModelMetadata:
    return ModelMetadata(
        input_size=(config.input_size, config.input_size),
        channels=data.channels,
        class_names=data.class_names,
        mode=config.mode,
        normalisation=Normalisation(method=config.normalisation),
        instance=InstanceParams(config.boundary_width, config.min_instance_size,
                                marker_min_distance=config.marker_min_distance)
        if config.mode == "instance" else None,
        name=config.name,
        description=config.description,
        training={
            **data.source,
            **config.extra_training_info,
            "architecture": config.architecture,
            "loss": config.loss,
            "epochs": config.epochs,
            "seed": config.seed,
            "scale_range": list(config.scale_range),
        },
    )


def build_model(config: TrainConfig, metadata: ModelMetadata):
    from unet.models import build_unet, simple_unet

    shape = (config.input_size, config.input_size, metadata.channels)
    if config.architecture == "simple":
        if metadata.output_channels != 1:
            raise ValueError(
                f"simple_unet is binary (1 sigmoid output) but the data has "
                f"{metadata.num_classes} classes; use --arch unet"
            )
        return simple_unet(shape)
    if config.architecture != "unet":
        raise ValueError(f"--arch must be 'simple' or 'unet', got {config.architecture!r}")
    return build_unet(
        shape, num_classes=metadata.output_channels, depth=config.depth,
        base_filters=config.base_filters, batch_norm=config.batch_norm,
        dropout=config.dropout, upsampling=config.upsampling, name=config.name,
    )


def distribution_strategy(name: str):
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy must be none, mirrored or multiworker, got {name!r}")


def train(config: TrainConfig) -> dict:
    """Run training end to end; returns the final evaluation dictionary."""
    # The data is read and validated before TensorFlow loads, so a bad folder is reported at once
    # and its error is not buried under TensorFlow's start-up log lines.
    data = load_training_data(config)
    import keras
    import tensorflow as tf

    from unet.checkpoint import AtomicBestCheckpoint
    from unet.losses import LOSSES, SegmentationMeanIoU, SegmentationPixelAccuracy
    from unet.pipeline import (
        Augmentation,
        prepare_training_images,
        training_dataset,
        validation_arrays,
    )

    if config.loss not in LOSSES:
        raise ValueError(f"--loss must be one of {sorted(LOSSES)}, got {config.loss!r}")
    keras.utils.set_random_seed(config.seed)
    metadata = build_metadata(config, data)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / f"{config.name}.keras"
    # Per-process staging names: two runs into one folder never clobber each other's files.
    staged_model = out / f".{config.name}.{os.getpid()}.staged.keras"
    staged_history = out / f".history.{os.getpid()}.staged.csv"

    strategy = distribution_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config, metadata)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=LOSSES[config.loss],
            metrics=[SegmentationMeanIoU(metadata.num_classes), SegmentationPixelAccuracy()],
        )
    samples_per_epoch = config.samples_per_epoch or max(
        len(data.train_images), 8 * config.batch_size
    )
    train_stream = training_dataset(
        prepare_training_images(data.train_images, metadata), data.train_targets,
        metadata.input_size, config.batch_size, config.seed,
        Augmentation(scale=tuple(config.scale_range)),
    )
    validation_inputs, validation_targets = validation_arrays(
        data.validation_images, data.validation_targets, metadata
    )
    validation_stream = tf.data.Dataset.from_tensor_slices((validation_inputs, validation_targets))
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        # Keras fails on a final batch that does not split evenly across replicas; dropping
        # fewer than `replicas` images only affects the per-epoch score, not evaluation.json.
        validation_stream = validation_stream.batch(replicas, drop_remainder=True)
    else:
        validation_stream = validation_stream.batch(config.batch_size)
    callbacks = [
        AtomicBestCheckpoint(staged_model, monitor="val_mean_iou"),
        keras.callbacks.EarlyStopping(monitor="val_mean_iou", mode="max", patience=config.patience),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_mean_iou", mode="max", factor=0.5, patience=max(2, config.patience // 2)
        ),
        keras.callbacks.CSVLogger(str(staged_history)),
    ]
    try:
        model.fit(
            train_stream,
            epochs=config.epochs,
            steps_per_epoch=math.ceil(samples_per_epoch / config.batch_size),
            validation_data=validation_stream,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        if not staged_model.exists():
            raise RuntimeError("training produced no checkpoint (validation mean IoU never logged)")
        metadata.training["best_epoch"] = callbacks[0].best_epoch
        metadata.training["best_val_mean_iou"] = callbacks[0].best
        save_metadata(metadata, out / f"{config.name}.json")
        # Ship the best weights without the optimizer state: a third of the file size.
        from unet.models import load_model

        with atomic_path(model_path) as temporary:
            load_model(str(staged_model), compile=False).save(temporary)
        staged_history.replace(out / "history.csv")
    finally:
        staged_model.unlink(missing_ok=True)
        staged_history.unlink(missing_ok=True)
    plot_curves(out / "history.csv", out / "curves.png")

    from unet.evaluate import evaluate_samples
    from unet.runtime import Segmenter

    segmenter = Segmenter.from_path(model_path)
    evaluation = evaluate_samples(
        segmenter, data.validation_images, data.validation_targets, data.validation_instances
    )
    evaluation["model"] = str(model_path)
    evaluation["split"] = "validation"
    atomic_write_text(out / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    return evaluation


def plot_curves(history_csv: Path, png_path: Path) -> None:
    """Loss and metric curves, train vs validation, one panel each."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    panels = [k for k in ("loss", "mean_iou", "pixel_accuracy") if k in rows[0]]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    for axis, key in zip(np.atleast_1d(axes), panels, strict=True):
        axis.plot(epochs, [float(r[key]) for r in rows], label="train")
        if f"val_{key}" in rows[0]:
            axis.plot(epochs, [float(r[f"val_{key}"]) for r in rows], label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.legend()
    figure.tight_layout()
    with atomic_path(png_path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    defaults = TrainConfig(out=Path("runs/model"))
    parser = argparse.ArgumentParser(prog="python -m unet.train", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder with images/ and masks/")
    source.add_argument("--synthetic", action="store_true", help="train on generated shapes")
    parser.add_argument("--synthetic-count", type=int, default=defaults.synthetic_count)
    parser.add_argument("--synthetic-shapes", default=",".join(defaults.synthetic_shapes),
                        help="comma-separated: disc,square,triangle (one shape = binary)")
    parser.add_argument("--synthetic-dark-fraction", type=float,
                        default=defaults.synthetic_dark_fraction,
                        help="share of synthetic images with objects darker than the background")
    parser.add_argument("--synthetic-touching", type=float, default=defaults.synthetic_touching,
                        help="chance that a synthetic object touches one placed before it")
    parser.add_argument("--mode", choices=("semantic", "instance"), default=defaults.mode)
    parser.add_argument("--arch", dest="architecture", choices=("simple", "unet"),
                        default=defaults.architecture)
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="model input channels (default: from the data)")
    parser.add_argument("--class-names", default=None,
                        help="comma-separated, background first; masks must hold 0..K-1")
    parser.add_argument("--depth", type=int, default=defaults.depth)
    parser.add_argument("--base-filters", type=int, default=defaults.base_filters)
    parser.add_argument("--no-batch-norm", dest="batch_norm", action="store_false")
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--upsampling", choices=("transpose", "resize"), default=defaults.upsampling)
    parser.add_argument("--loss", choices=("ce", "dice", "ce_dice"), default=defaults.loss)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--samples-per-epoch", type=int, default=None)
    parser.add_argument("--lr", dest="learning_rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--val-fraction", dest="validation_fraction", type=float,
                        default=defaults.validation_fraction)
    parser.add_argument("--val-prefix", dest="validation_prefix", default=None,
                        help="samples whose name starts with this are the validation set "
                        "(instead of a random split), e.g. a separate slab of slices")
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--name", default=defaults.name, help="file stem of the model")
    parser.add_argument("--description", default="")
    parser.add_argument("--boundary-width", type=int, default=defaults.boundary_width)
    parser.add_argument("--min-instance-size", type=int, default=defaults.min_instance_size)
    parser.add_argument("--marker-min-distance", type=int, default=defaults.marker_min_distance,
                        help="instance mode: seed objects at distance-transform peaks this far "
                        "apart (0: one seed per interior region)")
    parser.add_argument("--normalisation", choices=("percentile", "unit"),
                        default=defaults.normalisation)
    parser.add_argument("--scale-range", type=float, nargs=2, default=defaults.scale_range,
                        metavar=("MIN", "MAX"),
                        help="random rescaling of training images before cropping; cover the "
                        "scale at which inference will see objects")
    parser.add_argument("--strategy", choices=("none", "mirrored", "multiworker"),
                        default=defaults.strategy)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quiet", dest="verbose", action="store_const", const=2, default=1)
    args = vars(parser.parse_args(argv))
    args["synthetic_shapes"] = tuple(s.strip() for s in args["synthetic_shapes"].split(",") if s.strip())
    if args["class_names"]:
        args["class_names"] = [s.strip() for s in args["class_names"].split(",")]
    return TrainConfig(**args)


def main(argv: list[str] | None = None) -> int:
    import shlex

    config = parse_args(argv)
    arguments = sys.argv[1:] if argv is None else argv
    config.extra_training_info["command"] = "python -m unet.train " + shlex.join(arguments)
    evaluation = train(config)
    print(json.dumps({k: evaluation[k] for k in ("mean_iou", "pixel_accuracy")}, indent=2))
    print(f"wrote {config.out}/{config.name}.keras and its metadata, history, curves, evaluation")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
