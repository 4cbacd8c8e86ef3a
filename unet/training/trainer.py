"""Train a U-Net end to end: data -> metadata -> model -> fit -> commit -> evaluate.

Writes to `config.out`: NAME.keras (best checkpoint by validation mean IoU), NAME.json
(metadata), history.csv, curves.png and evaluation.json. Everything is staged under
temporary names and renamed only when the run completes, so an interrupted run never
replaces a good model. The data is read and checked before TensorFlow loads, so a bad folder
is reported at once and not buried under TensorFlow's start-up log lines.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet.data.synthetic import SyntheticSpec
from unet.runtime.atomic import atomic_path, atomic_write_text
from unet.runtime.errors import UserError
from unet.runtime.metadata import InstanceParams, ModelMetadata, Normalisation, save_metadata

ARCHITECTURES = ("simple", "unet")
STRATEGIES = ("none", "mirrored")
# Keras 3.15's fit cannot train under MultiWorkerMirroredStrategy: it fails on the first
# batch with "Attempt to convert a value (PerReplica...)" (keras-team/keras#20585).
UNSUPPORTED_STRATEGIES = {"multiworker": "Keras 3's Model.fit does not run under TensorFlow's "
                          "MultiWorkerMirroredStrategy (keras-team/keras#20585); train on one host "
                          "with --strategy mirrored"}


@dataclass
class TrainConfig:
    out: Path
    data: list[Path] | None = None
    synthetic: SyntheticSpec | None = None
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
    instance_brightness: float = 1.0
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
    train_instances: list[np.ndarray] | None
    class_names: list[str]
    channels: int
    source: dict


@dataclass
class StagedFiles:
    """Per-process staging names: two runs into one folder never clobber each other's files."""

    out: Path
    name: str

    @property
    def model(self) -> Path:
        return self.out / f".{self.name}.{os.getpid()}.staged.keras"

    @property
    def history(self) -> Path:
        return self.out / f".history.{os.getpid()}.staged.csv"

    def remove(self) -> None:
        self.model.unlink(missing_ok=True)
        self.history.unlink(missing_ok=True)


def train(config: TrainConfig) -> dict:
    """Run training end to end; returns the final evaluation dictionary."""
    data = load_training_data(config)
    metadata = build_metadata(config, data)
    check_model_options(config, metadata)
    staged = StagedFiles(Path(config.out), config.name)
    staged.out.mkdir(parents=True, exist_ok=True)
    try:
        best_epoch, best_score = fit(config, data, metadata, staged)
        model_path = commit(config, metadata, staged, best_epoch, best_score)
    finally:
        staged.remove()
    plot_curves(staged.out / "history.csv", staged.out / "curves.png")
    return evaluate_trained(model_path, data)


def load_training_data(config: TrainConfig) -> TrainingData:
    """Synthetic shapes or a folder dataset, split into train and validation."""
    if config.synthetic is not None:
        by_stem, class_names, channels, source = _synthetic_samples(config.synthetic, config.mode)
    else:
        by_stem, class_names, channels, source = _folder_samples(config)
    train_stems, validation_stems = _split(config, list(by_stem))
    if config.mode == "instance":
        class_names = ["background", "interior", "boundary"]
    source["train_stems"] = train_stems
    source["validation_stems"] = validation_stems
    validation_labels = [by_stem[s][1] for s in validation_stems]
    train_stems = balanced_by_folder(train_stems)
    return TrainingData(
        train_images=[by_stem[s][0] for s in train_stems],
        train_targets=_targets_for(config, [by_stem[s][1] for s in train_stems]),
        validation_images=[by_stem[s][0] for s in validation_stems],
        validation_targets=_targets_for(config, validation_labels),
        validation_instances=validation_labels if config.mode == "instance" else None,
        train_instances=[by_stem[s][1] for s in train_stems] if config.mode == "instance" else None,
        class_names=class_names,
        channels=channels,
        source=source,
    )


def _synthetic_samples(spec: SyntheticSpec, mode: str):
    from unet.data.synthetic import make_dataset

    samples = make_dataset(spec)
    by_stem = {str(index): (sample.image, sample.instance_labels if mode == "instance" else sample.class_mask)
               for index, sample in enumerate(samples)}
    return by_stem, ["background", *spec.shapes], spec.channels, {"synthetic": spec.to_dict()}


def _folder_samples(config: TrainConfig):
    """Samples of one or more folder datasets; with several, each stem is `FOLDER/stem`."""
    from unet.data.folder import DatasetError, load_folder
    from unet.data.recipes import RECIPES

    if not config.data:
        raise DatasetError("give --data DIR [DIR ...] (folders with images/ and masks/) or --synthetic")
    folders = [Path(folder) for folder in config.data]
    if len({folder.name for folder in folders}) < len(folders):
        raise DatasetError(f"--data folders must have different names, got {[str(f) for f in folders]}")
    num_classes = len(config.class_names) if config.class_names and config.mode == "semantic" else None
    by_stem = {}
    for folder in folders:
        prefix = f"{folder.name}/" if len(folders) > 1 else ""
        for sample in load_folder(folder, num_classes=num_classes):
            by_stem[prefix + sample.stem] = (sample.image, sample.labels)
    images = [image for image, _ in by_stem.values()]
    channels = config.channels or (3 if any(image.ndim == 3 for image in images) else 1)
    if config.class_names:
        class_names = list(config.class_names)
    else:
        highest = max(int(labels.max()) for _, labels in by_stem.values())
        class_names = ["background", *[f"class{i}" for i in range(1, max(highest, 1) + 1)]]
    # As given, never resolved: the metadata ships, and an absolute path would name this machine.
    recorded = [folder.as_posix() for folder in folders]
    datasets = [f.name for f in folders if f.name in RECIPES and (f / "SOURCE.md").is_file()]
    if len(folders) == 1:
        source = {"data": recorded[0], **({"dataset": datasets[0]} if datasets else {})}
    else:
        source = {"data": recorded, "dataset": datasets}
    return by_stem, class_names, channels, source


def balanced_by_folder(stems: list[str]) -> list[str]:
    """Stems of several folders (`FOLDER/stem`) repeated so that each folder is drawn about equally.

    14 real images beside 400 simulated ones would otherwise be 3% of what training sees.
    """
    by_folder: dict[str, list[str]] = {}
    for stem in stems:
        by_folder.setdefault(stem.partition("/")[0] if "/" in stem else "", []).append(stem)
    if len(by_folder) < 2:
        return stems
    largest = max(len(group) for group in by_folder.values())
    return [stem for group in by_folder.values() for stem in group * round(largest / len(group))]


def _split(config: TrainConfig, stems: list[str]) -> tuple[list[str], list[str]]:
    from unet.data.folder import DatasetError, split_stems

    if not config.validation_prefix:
        return split_stems(stems, config.validation_fraction, config.seed)
    validation_stems = [s for s in stems if s.startswith(config.validation_prefix)]
    train_stems = [s for s in stems if not s.startswith(config.validation_prefix)]
    if not validation_stems or not train_stems:
        raise DatasetError(
            f"--val-prefix {config.validation_prefix!r} leaves {len(train_stems)} training "
            f"and {len(validation_stems)} validation samples; both must be non-empty"
        )
    return train_stems, validation_stems


def _targets_for(config: TrainConfig, labels: list[np.ndarray]) -> list[np.ndarray]:
    if config.mode == "instance":
        from unet.runtime.instances import instance_targets

        return [instance_targets(label, config.boundary_width) for label in labels]
    return [label.astype(np.uint8) for label in labels]


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
            **({"instance_brightness": config.instance_brightness}
               if config.instance_brightness > 1 else {}),
        },
        object_diameter=training_object_diameter(data, config) if config.mode == "instance" else None,
    )


def training_object_diameter(data: TrainingData, config: TrainConfig) -> float:
    """The median object diameter, in model-input pixels, that training showed the model.

    Each training image is seen at random scales (never below the crop size); its objects count
    at the geometric middle of the scales it can be drawn at.
    """
    from skimage.measure import regionprops

    low, high = config.scale_range
    diameters = []
    for labels in data.train_instances:
        smallest_scale = config.input_size / min(labels.shape)
        scales = (max(low, smallest_scale), max(high, smallest_scale))
        scale = math.sqrt(scales[0] * scales[1])
        diameters.extend(region.equivalent_diameter_area * scale for region in regionprops(labels))
    return round(float(np.median(diameters)), 1) if diameters else None


def check_model_options(config: TrainConfig, metadata: ModelMetadata) -> None:
    """Refuse an architecture or strategy that cannot work, before TensorFlow loads."""
    if config.architecture not in ARCHITECTURES:
        raise UserError(f"--arch must be one of {ARCHITECTURES}, got {config.architecture!r}")
    if config.architecture == "simple" and metadata.output_channels != 1:
        raise UserError(
            f"simple_unet is binary (1 sigmoid output) but the data has "
            f"{metadata.num_classes} classes; use --arch unet"
        )
    if config.strategy in UNSUPPORTED_STRATEGIES:
        raise UserError(f"--strategy {config.strategy}: {UNSUPPORTED_STRATEGIES[config.strategy]}")
    if config.strategy not in STRATEGIES:
        raise UserError(f"--strategy must be one of {STRATEGIES}, got {config.strategy!r}")


def build_model(config: TrainConfig, metadata: ModelMetadata):
    from unet.training.models import build_unet, simple_unet

    shape = (config.input_size, config.input_size, metadata.channels)
    if config.architecture == "simple":
        return simple_unet(shape)
    return build_unet(
        shape, num_classes=metadata.output_channels, depth=config.depth,
        base_filters=config.base_filters, batch_norm=config.batch_norm,
        dropout=config.dropout, upsampling=config.upsampling, name=config.name,
    )


def distribution_strategy(name: str):
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy()


def compiled_model(config: TrainConfig, metadata: ModelMetadata, strategy):
    """The model, built and compiled inside the distribution strategy's scope."""
    import keras

    from unet.training.losses import LOSSES, SegmentationMeanIoU, SegmentationPixelAccuracy

    if config.loss not in LOSSES:
        raise UserError(f"--loss must be one of {sorted(LOSSES)}, got {config.loss!r}")
    with strategy.scope():
        model = build_model(config, metadata)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=LOSSES[config.loss],
            metrics=[SegmentationMeanIoU(metadata.num_classes), SegmentationPixelAccuracy()],
        )
    return model


def data_streams(config: TrainConfig, data: TrainingData, metadata: ModelMetadata, replicas: int):
    """The endless augmented training stream and the batched validation stream."""
    import tensorflow as tf

    from unet.training.pipeline import (
        Augmentation,
        prepare_training_images,
        training_dataset,
        validation_arrays,
    )

    train_stream = training_dataset(
        prepare_training_images(data.train_images, metadata), data.train_targets,
        metadata.input_size, config.batch_size, config.seed,
        Augmentation(scale=tuple(config.scale_range), instance_brightness=config.instance_brightness),
        data.train_instances,
        metadata.normalisation,
    )
    validation_inputs, validation_targets = validation_arrays(
        data.validation_images, data.validation_targets, metadata
    )
    validation_stream = tf.data.Dataset.from_tensor_slices((validation_inputs, validation_targets))
    if replicas > 1:
        # Keras fails on a final batch that does not split evenly across replicas; dropping
        # fewer than `replicas` images only affects the per-epoch score, not evaluation.json.
        return train_stream, validation_stream.batch(replicas, drop_remainder=True)
    return train_stream, validation_stream.batch(config.batch_size)


def fit(
    config: TrainConfig, data: TrainingData, metadata: ModelMetadata, staged: StagedFiles
) -> tuple[int, float]:
    """Train with early stopping; the best checkpoint goes to `staged.model`. Returns (epoch, score)."""
    import keras

    from unet.training.checkpoint import AtomicBestCheckpoint

    keras.utils.set_random_seed(config.seed)
    strategy = distribution_strategy(config.strategy)
    model = compiled_model(config, metadata, strategy)
    train_stream, validation_stream = data_streams(config, data, metadata, strategy.num_replicas_in_sync)
    samples_per_epoch = config.samples_per_epoch or max(len(data.train_images), 8 * config.batch_size)
    checkpoint = AtomicBestCheckpoint(staged.model, monitor="val_mean_iou")
    callbacks = [
        checkpoint,
        keras.callbacks.EarlyStopping(monitor="val_mean_iou", mode="max", patience=config.patience),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_mean_iou", mode="max", factor=0.5, patience=max(2, config.patience // 2)
        ),
        keras.callbacks.CSVLogger(str(staged.history)),
    ]
    model.fit(
        train_stream,
        epochs=config.epochs,
        steps_per_epoch=math.ceil(samples_per_epoch / config.batch_size),
        validation_data=validation_stream,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    if not staged.model.exists():
        raise RuntimeError("training produced no checkpoint (validation mean IoU never logged)")
    return checkpoint.best_epoch, checkpoint.best


def commit(config: TrainConfig, metadata: ModelMetadata, staged: StagedFiles, best_epoch: int,
           best_score: float) -> Path:
    """Move the staged model and history into place with the metadata; returns the model path."""
    from unet.training.models import load_model

    metadata.training["best_epoch"] = best_epoch
    metadata.training["best_val_mean_iou"] = best_score
    save_metadata(metadata, staged.out / f"{config.name}.json")
    model_path = staged.out / f"{config.name}.keras"
    # Ship the best weights without the optimizer state: a third of the file size.
    with atomic_path(model_path) as temporary:
        load_model(str(staged.model), compile=False).save(temporary)
    staged.history.replace(staged.out / "history.csv")
    return model_path


def evaluate_trained(model_path: Path, data: TrainingData) -> dict:
    """Validation scores of the committed model through the shared runtime, as evaluation.json."""
    from unet.runtime.evaluation import evaluate_samples
    from unet.runtime.segmenter import Segmenter

    segmenter = Segmenter.from_path(model_path)
    evaluation = evaluate_samples(
        segmenter, data.validation_images, data.validation_targets, data.validation_instances
    )
    evaluation["model"] = model_path.name
    evaluation["split"] = "validation"
    atomic_write_text(model_path.parent / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
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
