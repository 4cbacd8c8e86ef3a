"""Train a U-Net end to end: data -> metadata -> model -> fit -> commit -> evaluate.

Writes to `config.out`: NAME.keras (best checkpoint by validation mean IoU), NAME.json
(metadata), history.csv, curves.png and evaluation.json. Until the run completes, everything
lives in `.NAME.training/` (unet.training.loop.TrainingState) and is moved into place only
then, so an interrupted run never replaces a good model, and the same command run again
resumes from its last checkpoint. Across hosts only the chief writes these files. The data is
read and checked before TensorFlow loads, so a bad folder is reported at once and not buried
under TensorFlow's start-up log lines.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet.data.splits import folder_stem, split_folder_stem
from unet.data.synthetic import SyntheticSpec
from unet.runtime.atomic import atomic_path, atomic_write_text
from unet.runtime.errors import UserError
from unet.runtime.metadata import InstanceParams, ModelMetadata, Normalisation, save_metadata
from unet.training.loop import STRATEGIES, TrainingState, check_tf_config

ARCHITECTURES = ("simple", "unet")
DEFAULT_CHECKPOINT_EVERY = 50


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
    max_filters: int | None = None
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
    core_fraction: float = 0.0
    normalisation: str = "percentile"
    scale_range: tuple[float, float] = (0.7, 1.4)
    instance_brightness: float = 1.0
    border_weight: float = 0.0
    border_sigma: float = 5.0
    init_weights: Path | None = None
    strategy: str = "none"
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
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
    train_pixel_weights: list[np.ndarray] | None
    class_names: list[str]
    channels: int
    source: dict


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    writes_files: bool


def train(config: TrainConfig) -> dict:
    """Run training end to end; returns the final evaluation dictionary ({} on a non-chief worker).

    A run that stops early keeps `.NAME.training/`; the same command resumes from it.
    """
    data = load_training_data(config)
    metadata = build_metadata(config, data)
    check_model_options(config, metadata)
    state = TrainingState(Path(config.out), config.name)
    claim_training_state(state, config)
    result = fit(config, data, metadata, state)
    if not result.writes_files:
        return {}
    model_path = commit(config, metadata, state, result.best_epoch, result.best_score)
    plot_curves(state.out / "history.csv", state.out / "curves.png")
    return evaluate_trained(model_path, data)


def resumable_settings(config: TrainConfig) -> dict:
    """What must not change between a run and its resumption (how much it prints may)."""
    settings = {key: value for key, value in dataclasses.asdict(config).items()
                if key not in ("verbose", "extra_training_info", "out")}
    return json.loads(json.dumps(settings, default=str))


def claim_training_state(state: TrainingState, config: TrainConfig) -> None:
    """Create the run's state folder, or check that the one found was left by the same settings."""
    settings = resumable_settings(config)
    if state.settings.is_file():
        found = json.loads(state.settings.read_text())
        if found != settings:
            changed = sorted(key for key in settings.keys() | found.keys()
                             if settings.get(key) != found.get(key))
            raise UserError(f"{state.folder} holds an unfinished run with other settings "
                            f"({', '.join(changed)}); run that command again to resume it, or delete the "
                            "folder to start anew")
        return
    state.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(state.settings, json.dumps(settings, indent=2) + "\n")


def load_training_data(config: TrainConfig) -> TrainingData:
    """Synthetic shapes or a folder dataset, split into train and validation."""
    if config.synthetic is not None:
        by_stem, class_names, channels, source = _synthetic_samples(config.synthetic, config.mode)
    else:
        by_stem, class_names, channels, source = _folder_samples(config)
    train_stems, validation_stems = _split(config, list(by_stem))
    if config.mode == "instance":
        class_names = instance_params(config).class_names
    source["train_stems"] = train_stems
    source["validation_stems"] = validation_stems
    validation_labels = [by_stem[s][1] for s in validation_stems]
    train_stems = balanced_by_folder(train_stems)
    train_labels = [by_stem[s][1] for s in train_stems]
    train_targets = _targets_for(config, train_labels)
    return TrainingData(
        train_images=[by_stem[s][0] for s in train_stems],
        train_targets=train_targets,
        validation_images=[by_stem[s][0] for s in validation_stems],
        validation_targets=_targets_for(config, validation_labels),
        validation_instances=validation_labels if config.mode == "instance" else None,
        train_instances=train_labels if config.mode == "instance" else None,
        train_pixel_weights=_pixel_weights_for(config, train_labels, train_targets),
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
        for sample in load_folder(folder, num_classes=num_classes):
            stem = folder_stem(folder.name, sample.stem) if len(folders) > 1 else sample.stem
            by_stem[stem] = (sample.image, sample.labels)
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
        by_folder.setdefault(split_folder_stem(stem)[0], []).append(stem)
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

        return [instance_targets(label, config.boundary_width, config.core_fraction) for label in labels]
    return [label.astype(np.uint8) for label in labels]


def _pixel_weights_for(config: TrainConfig, labels: list[np.ndarray],
                       targets: list[np.ndarray]) -> list[np.ndarray] | None:
    """The U-Net paper's weight map per training image, or None without --border-weight.

    Semantic labels hold no instances: their objects are the connected regions of one class.
    """
    if config.border_weight == 0:
        return None
    from skimage.measure import label as connected_regions

    from unet.data.border_weights import border_weight_map
    from unet.runtime.instances import BACKGROUND, BOUNDARY

    separating = (BACKGROUND, BOUNDARY) if config.mode == "instance" else (0,)
    weights = []
    for label_map, target in zip(labels, targets, strict=True):
        objects = label_map if config.mode == "instance" else connected_regions(label_map, connectivity=1)
        weights.append(border_weight_map(objects, target, config.border_weight, config.border_sigma,
                                         separating))
    return weights


def instance_params(config: TrainConfig) -> InstanceParams:
    return InstanceParams(config.boundary_width, config.min_instance_size,
                          marker_min_distance=config.marker_min_distance,
                          core_fraction=config.core_fraction)


def build_metadata(config: TrainConfig, data: TrainingData) -> ModelMetadata:
    return ModelMetadata(
        input_size=(config.input_size, config.input_size),
        channels=data.channels,
        class_names=data.class_names,
        mode=config.mode,
        normalisation=Normalisation(method=config.normalisation),
        instance=instance_params(config) if config.mode == "instance" else None,
        name=config.name,
        description=config.description,
        training={
            **data.source,
            **config.extra_training_info,
            "architecture": config.architecture,
            "loss": config.loss,
            "epochs": config.epochs,
            "seed": config.seed,
            "strategy": config.strategy,
            "scale_range": list(config.scale_range),
            **({"instance_brightness": config.instance_brightness}
               if config.instance_brightness > 1 else {}),
            **({"border_weight": {"w0": config.border_weight, "sigma_px": config.border_sigma}}
               if config.border_weight > 0 else {}),
            **({"initial_weights": initial_weights_record(config.init_weights)}
               if config.init_weights is not None else {}),
        },
        object_diameter=training_object_diameter(data, config) if config.mode == "instance" else None,
    )


def training_object_diameter(data: TrainingData, config: TrainConfig) -> float:
    """The median object diameter, in model-input pixels, that training showed the model.

    Each training image is seen at random scales; its objects count at `middle_scale`.
    """
    from skimage.measure import regionprops

    diameters = []
    for labels in data.train_instances:
        scale = middle_scale(labels.shape, config)
        diameters.extend(region.equivalent_diameter_area * scale for region in regionprops(labels))
    return round(float(np.median(diameters)), 1) if diameters else None


def middle_scale(image_shape: tuple[int, ...], config: TrainConfig) -> float:
    """The geometric middle of the scales training draws an image of this shape at (its scale
    range, never below the crop size)."""
    low, high = config.scale_range
    smallest_scale = config.input_size / min(image_shape[:2])
    return math.sqrt(max(low, smallest_scale) * max(high, smallest_scale))


def initial_weights_record(path: Path) -> dict:
    """Which model a run started from: its file, its SHA-256, the command that trained it and,
    if that run started from another model, that model's record in turn."""
    import hashlib

    from unet.runtime.metadata import load_metadata

    if not Path(path).is_file():
        raise UserError(f"--init-weights {path}: no such model file")
    record = {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    sidecar = Path(path).with_suffix(".json")
    if sidecar.is_file():
        training = load_metadata(sidecar).training
        record["command"] = training.get("command")
        if "initial_weights" in training:
            record["initial_weights"] = training["initial_weights"]
    return record


def check_model_options(config: TrainConfig, metadata: ModelMetadata) -> None:
    """Refuse an architecture or strategy that cannot work, before TensorFlow loads."""
    if config.architecture not in ARCHITECTURES:
        raise UserError(f"--arch must be one of {ARCHITECTURES}, got {config.architecture!r}")
    if config.architecture == "simple" and metadata.output_channels != 1:
        raise UserError(
            f"simple_unet is binary (1 sigmoid output) but the data has "
            f"{metadata.num_classes} classes; use --arch unet"
        )
    if config.strategy not in STRATEGIES:
        raise UserError(f"--strategy must be one of {STRATEGIES}, got {config.strategy!r}")
    if config.strategy == "multiworker":
        check_tf_config()
    if config.checkpoint_every < 0:
        raise UserError(f"--checkpoint-every must be 0 (epoch ends only) or more, "
                        f"got {config.checkpoint_every}")
    if config.core_fraction and config.mode != "instance":
        raise UserError(f"--core-fraction {config.core_fraction} needs --mode instance: only instance "
                        "models have objects with cores")


def build_model(config: TrainConfig, metadata: ModelMetadata, synchronized_batch_norm: bool = False):
    from unet.training.models import build_unet, simple_unet

    shape = (config.input_size, config.input_size, metadata.channels)
    if config.architecture == "simple":
        model = simple_unet(shape)
    else:
        model = build_unet(
            shape, num_classes=metadata.output_channels, depth=config.depth,
            base_filters=config.base_filters, max_filters=config.max_filters, batch_norm=config.batch_norm,
            dropout=config.dropout, upsampling=config.upsampling, name=config.name,
            synchronized_batch_norm=synchronized_batch_norm,
        )
    if config.init_weights is not None:
        load_initial_weights(model, config.init_weights)
    return model


def load_initial_weights(model, path: Path) -> None:
    """`path`'s weights into `model`, layer by layer.

    A model with more classes than `path`'s (an instance model given a core class) keeps the
    classes they share; each new class starts as a copy of the interior's output weights, the
    class it is carved from, so the new model starts where the old one stopped.
    """
    import keras

    from unet.runtime.instances import INTERIOR

    source = keras.models.load_model(path, compile=False)
    mismatch = (f"--init-weights {path} does not fit the model these options build; give the same "
                "--depth, --base-filters and architecture it was trained with")
    if len(source.layers) != len(model.layers):
        raise UserError(f"{mismatch} ({len(source.layers)} layers, these options build {len(model.layers)})")
    last_weighted = max(i for i, layer in enumerate(model.layers) if layer.weights)
    for i, (old, new) in enumerate(zip(source.layers, model.layers, strict=True)):
        old_values = old.get_weights()
        new_shapes = [w.shape for w in new.get_weights()]
        if [v.shape for v in old_values] == new_shapes:
            new.set_weights(old_values)
            continue
        grown = i == last_weighted and all(v.shape[:-1] == s[:-1] and v.shape[-1] < s[-1]
                                           for v, s in zip(old_values, new_shapes, strict=True))
        if not grown:
            raise UserError(f"{mismatch} (layer {new.name}: {[v.shape for v in old_values]} against "
                            f"{new_shapes})")
        new.set_weights([np.concatenate([v] + [v[..., INTERIOR:INTERIOR + 1]] * (s[-1] - v.shape[-1]),
                                        axis=-1) for v, s in zip(old_values, new_shapes, strict=True)])


def fit(config: TrainConfig, data: TrainingData, metadata: ModelMetadata, state: TrainingState) -> FitResult:
    """Train with early stopping in the loop of unet.training.loop; the best model goes to `state`."""
    import functools

    from unet.training import loop
    from unet.training.pipeline import validation_arrays

    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    strategy = loop.make_strategy(config.strategy)
    if config.loss not in loop_losses():
        raise UserError(f"--loss must be one of {sorted(loop_losses())}, got {config.loss!r}")
    samples_per_epoch = config.samples_per_epoch or max(len(data.train_images), 8 * config.batch_size)
    settings = loop.LoopSettings(
        epochs=config.epochs, batch_size=config.batch_size,
        steps_per_epoch=math.ceil(samples_per_epoch / config.batch_size), learning_rate=config.learning_rate,
        patience=config.patience, loss=config.loss, seed=config.seed,
        checkpoint_every=config.checkpoint_every, verbose=config.verbose,
    )
    # An instance model's default path (auto-scale) shows it objects at the trained diameter, so
    # its validation does too; a semantic model's default path resizes the whole image.
    scales = ([middle_scale(image.shape, config) for image in data.validation_images]
              if config.mode == "instance" else None)
    validation = validation_arrays(data.validation_images, data.validation_targets, metadata, scales)
    best_epoch, best_score = loop.run(
        settings, functools.partial(build_model, config, metadata), train_stream(config, data, metadata),
        validation, metadata.num_classes, state, strategy)
    return FitResult(best_epoch, best_score, loop.is_chief(strategy))


def loop_losses() -> tuple[str, ...]:
    from unet.training.losses import LOSS_TERMS

    return tuple(LOSS_TERMS)


def train_stream(config: TrainConfig, data: TrainingData, metadata: ModelMetadata):
    """The training batches as the loop asks for them:
    (first_batch, pipeline, pipelines, per_replica_batch) -> tf.data.Dataset."""
    import functools

    from unet.training.pipeline import Augmentation, prepare_training_images, training_dataset

    augmentation = Augmentation(scale=tuple(config.scale_range),
                                instance_brightness=config.instance_brightness)
    return functools.partial(
        training_dataset, prepare_training_images(data.train_images, metadata), data.train_targets,
        metadata.input_size, config.batch_size, config.seed, augmentation, data.train_instances,
        metadata.normalisation, pixel_weights=data.train_pixel_weights)


def commit(config: TrainConfig, metadata: ModelMetadata, state: TrainingState, best_epoch: int,
           best_score: float) -> Path:
    """Move the best model and history into place with the metadata, then drop the run's state."""
    from unet.training.models import load_model

    metadata.training["best_epoch"] = best_epoch
    metadata.training["best_val_mean_iou"] = best_score
    save_metadata(metadata, state.out / f"{config.name}.json")
    model_path = state.out / f"{config.name}.keras"
    with atomic_path(model_path) as temporary:
        load_model(str(state.best_model), compile=False).save(temporary)
    state.history.replace(state.out / "history.csv")
    state.remove()
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
