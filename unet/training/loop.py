"""The training loop: one custom loop for every strategy, on one CPU or across hosts.

    --strategy none         TensorFlow's default strategy (one device)
    --strategy mirrored     MirroredStrategy: the devices of this host
    --strategy multiworker  MultiWorkerMirroredStrategy: hosts named in TF_CONFIG

The loop follows TensorFlow's guide "Custom training loop with Keras and
MultiWorkerMirroredStrategy" (Keras 3's `Model.fit` does not run under that strategy,
keras-team/keras#20585): each input pipeline reads its own share of every global batch
(`distribute_datasets_from_function`), `strategy.run` runs a step on every replica, and
`strategy.reduce` adds up losses and confusion matrices, so every worker sees the same
validation score and takes the same early-stopping and learning-rate decisions. Collectives,
the gRPC transport and TF_CONFIG are TensorFlow's.

Losses are computed over the global batch: cross-entropy as a sum over pixels divided by the
global pixel count, Dice from per-channel sums added across replicas, and batch normalisation
synchronised across replicas. A step split over workers is therefore the step one device would
take on the whole batch, up to the order of float additions.

Fault tolerance follows Keras's BackupAndRestore: the model, the optimizer, the epoch and step,
the best score, the early-stopping and learning-rate counters are checkpointed every
`checkpoint_every` steps and at every epoch end (the data stream's randomness is a function
of the seed and the position, so (epoch, step) is its whole state). A run restarted with the
same command resumes from the last checkpoint; the checkpoints go when the run completes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from unet.runtime.atomic import atomic_path
from unet.runtime.errors import UserError

STRATEGIES = ("none", "mirrored", "multiworker")
HISTORY_COLUMNS = ("epoch", "learning_rate", "loss", "mean_iou", "pixel_accuracy",
                   "val_loss", "val_mean_iou", "val_pixel_accuracy")
# Labels at or above the class count are padding: they count in no loss and no metric.
IGNORED_LABEL = 255
# ReduceLROnPlateau's settings, as Keras's callback applied them.
PLATEAU_FACTOR, PLATEAU_MIN_DELTA = 0.5, 1e-4


class WorkerLost(UserError):
    """A peer of a multi-worker run died or became unreachable; the run can resume."""


@dataclass(frozen=True)
class TrainingState:
    """Where a run keeps what it needs to resume: `<out>/.<name>.training/`.

    checkpoints/: TensorFlow checkpoints (the chief's); best.keras: the best model so far;
    history.csv: one row per finished epoch; settings.json: the settings it was started with.
    """

    out: Path
    name: str

    @property
    def folder(self) -> Path:
        return self.out / f".{self.name}.training"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def best_model(self) -> Path:
        return self.folder / "best.keras"

    @property
    def history(self) -> Path:
        return self.folder / "history.csv"

    @property
    def settings(self) -> Path:
        return self.folder / "settings.json"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def check_tf_config() -> dict:
    """The TF_CONFIG a multi-worker run needs, checked before TensorFlow loads."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UserError("--strategy multiworker needs TF_CONFIG in the environment, e.g. "
                        '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                        '"task": {"type": "worker", "index": 0}} (README, Training across hosts)')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not JSON: {error}") from error
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker"), list) or not cluster["worker"]:
        raise UserError(f"TF_CONFIG has no cluster with a list of workers: {text}")
    if not isinstance(task, dict) or task.get("type") not in cluster \
            or not isinstance(task.get("index"), int):
        raise UserError(f"TF_CONFIG's task must name a job of its cluster ({sorted(cluster)}) and an "
                        f"integer index: {text}")
    if not 0 <= task["index"] < len(cluster[task["type"]]):
        raise UserError(f"TF_CONFIG's task index {task['index']} is not one of the "
                        f"{len(cluster[task['type']])} {task['type']} addresses")
    return config


def make_strategy(name: str):
    import tensorflow as tf

    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """The task that writes files: the chief, else worker 0; every task of a one-host run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not jobs:
        return True
    if "chief" in jobs:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def global_batch_loss(loss_terms: tuple[str, ...], targets, probabilities, global_pixels: int, context):
    """The loss of the whole global batch, on one replica's share of it (the same value on every replica).

    Cross-entropy: this share's sum over pixels, added across replicas, over the global pixel
    count. Dice: per-channel sums added across replicas. Gradients flow through the additions.
    targets: (B, H, W, 1) classes, or (B, H, W, 2) classes and each pixel's cross-entropy weight.
    """
    import keras

    from unet.training.losses import dice_loss_from_sums, dice_sums, segmentation_crossentropy

    def added_across_replicas(values):
        # The default strategy's all_reduce does not pass gradients; with one replica it is the identity.
        return context.all_reduce("SUM", values) if context.num_replicas_in_sync > 1 else values

    pixel_weights = targets[..., 1] if targets.shape[-1] == 2 else None
    targets = targets[..., :1]
    loss = 0.0
    if "crossentropy" in loss_terms:
        pixel_losses = segmentation_crossentropy(targets, probabilities)
        if pixel_weights is not None:
            pixel_losses = pixel_losses * pixel_weights
        pixel_sum = keras.ops.sum(pixel_losses)
        loss += added_across_replicas(pixel_sum) / global_pixels
    if "dice" in loss_terms:
        loss += dice_loss_from_sums(*added_across_replicas(list(dice_sums(targets, probabilities))))
    return loss


def per_sample_loss(loss_terms: tuple[str, ...], targets, probabilities):
    """(B,) the loss of each sample on its own (validation)."""
    import keras

    from unet.training.losses import dice_loss_from_sums, dice_sums, segmentation_crossentropy

    loss = 0.0
    if "crossentropy" in loss_terms:
        loss += keras.ops.mean(segmentation_crossentropy(targets, probabilities), axis=(1, 2))
    if "dice" in loss_terms:
        loss += dice_loss_from_sums(*dice_sums(targets, probabilities, axes=(1, 2)))
    return loss


def confusion(targets, probabilities, num_classes: int):
    """(K, K) float64 counts of (true, predicted) classes; padding labels count nowhere."""
    import tensorflow as tf

    from unet.training.losses import predicted_classes

    labels = tf.reshape(tf.cast(targets[..., 0], tf.int32), [-1])
    predicted = tf.reshape(predicted_classes(probabilities), [-1])
    valid = labels < num_classes
    return tf.math.confusion_matrix(tf.where(valid, labels, 0), predicted, num_classes,
                                    weights=tf.cast(valid, tf.float64), dtype=tf.float64)


def scores(matrix) -> tuple[float, float]:
    """Mean IoU (classes absent from target and prediction left out, as Keras's) and pixel accuracy."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positive
    present = union > 0
    mean_iou = float(np.mean(true_positive[present] / union[present])) if present.any() else 0.0
    total = matrix.sum()
    return mean_iou, float(true_positive.sum() / total) if total else 0.0


@dataclass
class LoopSettings:
    """What the loop needs from the training configuration."""

    epochs: int
    batch_size: int
    steps_per_epoch: int
    learning_rate: float
    patience: int
    loss: str
    seed: int
    checkpoint_every: int
    verbose: int


def validation_shares(inputs, targets, replicas: int, per_replica: int):
    """Validation arrays padded to a whole number of global batches with ignored samples."""
    import numpy as np

    step = replicas * per_replica
    missing = -len(inputs) % step
    if missing:
        inputs = np.concatenate([inputs, np.zeros((missing, *inputs.shape[1:]), inputs.dtype)])
        padding = np.full((missing, *targets.shape[1:]), IGNORED_LABEL, targets.dtype)
        targets = np.concatenate([targets, padding])
    return inputs, targets


def run(settings: LoopSettings, build_model, train_stream, validation, num_classes: int,
        state: TrainingState, strategy) -> tuple[int, float]:
    """Train; the best model goes to `state.best_model`, each epoch to `state.history`.

    build_model(synchronized_batch_norm) -> keras.Model, called in the strategy's scope.
    train_stream(first_batch, pipeline, pipelines, per_replica_batch) -> tf.data.Dataset.
    validation: (inputs (N, h, w, C), targets (N, h, w, 1)) numpy arrays.
    Returns (best epoch, its validation mean IoU).
    """
    import tensorflow as tf

    training = Training(settings, build_model, train_stream, validation, num_classes, state, strategy)
    training.restore()
    try:
        while training.epoch < settings.epochs and not training.stopped:
            training.run_epoch()
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError) as error:
        if strategy.num_replicas_in_sync == 1:
            raise
        reason = str(error).strip().splitlines()[0]
        raise WorkerLost(f"training stopped at epoch {training.epoch + 1}, step {training.step}: TensorFlow "
                         f"aborted a collective ({reason}); nothing was replaced: start every worker again "
                         "with the same command to resume from the last checkpoint") from error
    return training.finish()


class Training:
    """The model, optimizer and counters of one run, checkpointed together, and its steps."""

    def __init__(self, settings: LoopSettings, build_model, train_stream, validation, num_classes: int,
                 state: TrainingState, strategy) -> None:
        import keras
        import tensorflow as tf

        from unet.training.losses import LOSS_TERMS

        self.settings, self.train_stream, self.num_classes = settings, train_stream, num_classes
        self.state, self.strategy = state, strategy
        replicas = strategy.num_replicas_in_sync
        if settings.batch_size % replicas:
            raise UserError(f"--batch-size {settings.batch_size} does not split over {replicas} replicas; "
                            f"give a multiple of {replicas}")
        self.chief = is_chief(strategy)
        self.per_replica = settings.batch_size // replicas
        self.validation = validation_shares(*validation, replicas, self.per_replica)
        self.validation_steps = len(self.validation[0]) // settings.batch_size
        self.plateau_patience = max(2, settings.patience // 2)
        keras.utils.set_random_seed(settings.seed)
        with strategy.scope():
            self.model = build_model(replicas > 1)
            self.optimizer = keras.optimizers.Adam(settings.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.progress = {
                "epoch": tf.Variable(0, dtype=tf.int64), "step": tf.Variable(0, dtype=tf.int64),
                "best": tf.Variable(-math.inf, dtype=tf.float64),
                "best_epoch": tf.Variable(0, dtype=tf.int64),
                "stop_wait": tf.Variable(0, dtype=tf.int64), "plateau_wait": tf.Variable(0, dtype=tf.int64),
                "plateau_best": tf.Variable(-math.inf, dtype=tf.float64),
                "learning_rate": tf.Variable(settings.learning_rate, dtype=tf.float64),
                # The epoch's running training loss and confusion, so a resumed epoch reports all of it.
                "epoch_loss": tf.Variable(0.0, dtype=tf.float64),
                "epoch_confusion": tf.Variable(tf.zeros((num_classes, num_classes), tf.float64)),
            }
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, **self.progress)
        # Every task saves (saving is collective) into a folder of its own. All restore the chief's
        # where they can read it (one host, or shared storage); a worker on another host, its own.
        self.own_folder = state.checkpoints if self.chief else \
            state.folder / f"checkpoints-{task_name(strategy)}"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.own_folder), max_to_keep=1)
        self.train_step, self.validate_step = self._steps(LOSS_TERMS[settings.loss])
        # Both pipelines are built once: a tf.data pipeline built every epoch keeps its memory
        # (its resident memory grew 680 MB an epoch on the nuclei recipe at --scale-range 1 2).
        self.validation_batches = strategy.distribute_datasets_from_function(self._validation_pipeline)
        self.train_batches = None  # the endless stream's one iterator, from the position `restore` finds

    @property
    def epoch(self) -> int:
        return int(self.progress["epoch"].numpy())

    @property
    def step(self) -> int:
        return int(self.progress["step"].numpy())

    @property
    def stopped(self) -> bool:
        """Keras's EarlyStopping: `patience` epochs in a row without a better validation mean IoU."""
        return self.epoch > 0 and int(self.progress["stop_wait"].numpy()) >= self.settings.patience

    def restore(self) -> None:
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(str(self.state.checkpoints)) or self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).expect_partial()
            self.optimizer.learning_rate = float(self.progress["learning_rate"].numpy())
            print(f"resuming from {Path(latest).name}: epoch {self.epoch + 1}, step {self.step} of "
                  f"{self.settings.steps_per_epoch}", flush=True)
        position = self.epoch * self.settings.steps_per_epoch + self.step
        if not all_agree(self.strategy, position):
            raise UserError(f"the workers restored different checkpoints (this one at step {position}); "
                            f"remove every worker's {self.state.folder.name} to start again")
        if self.chief:
            trim_history(self.state.history, self.epoch)
        batch_size = self.settings.batch_size
        self.train_batches = iter(self.strategy.distribute_datasets_from_function(
            lambda context: self.train_stream(position, context.input_pipeline_id,
                                              context.num_input_pipelines,
                                              context.get_per_replica_batch_size(batch_size))))

    def _steps(self, loss_terms: tuple[str, ...]):
        import tensorflow as tf

        model, optimizer, strategy, num_classes = self.model, self.optimizer, self.strategy, self.num_classes
        replicas = strategy.num_replicas_in_sync
        inputs = self.validation[0]
        global_pixels = self.settings.batch_size * inputs.shape[1] * inputs.shape[2]

        def train_replica(images, targets):
            context = tf.distribute.get_replica_context()
            with tf.GradientTape() as tape:
                probabilities = model(images, training=True)
                # Each replica's share: the optimizer adds the replicas' gradients up.
                loss = global_batch_loss(loss_terms, targets, probabilities, global_pixels, context)
                share = loss / replicas
            gradients = tape.gradient(share, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return share, confusion(targets, probabilities, num_classes)

        def validate_replica(images, targets):
            probabilities = model(images, training=False)
            real = tf.cast(targets[:, 0, 0, 0] < num_classes, tf.float32)
            losses = per_sample_loss(loss_terms, tf.where(targets < num_classes, targets, 0.0), probabilities)
            matrix = confusion(targets, probabilities, num_classes)
            return tf.reduce_sum(losses * real), tf.reduce_sum(real), matrix

        @tf.function
        def train_step(iterator):
            share, matrix = strategy.run(train_replica, args=next(iterator))
            return strategy.reduce("SUM", share, axis=None), strategy.reduce("SUM", matrix, axis=None)

        @tf.function
        def validate_step(iterator):
            sums = strategy.run(validate_replica, args=next(iterator))
            return tuple(strategy.reduce("SUM", value, axis=None) for value in sums)

        return train_step, validate_step

    def _validation_pipeline(self, context):
        import tensorflow as tf

        inputs, targets = self.validation
        shard = len(inputs) // context.num_input_pipelines
        start = context.input_pipeline_id * shard
        shard_arrays = (inputs[start:start + shard], targets[start:start + shard])
        return tf.data.Dataset.from_tensor_slices(shard_arrays).batch(self.per_replica)

    def run_epoch(self) -> None:
        """Train from the current step to the epoch's end, validate, decide, record, checkpoint."""
        import tensorflow as tf

        settings, progress = self.settings, self.progress
        epoch = self.epoch
        for step in range(self.step, settings.steps_per_epoch):
            loss, matrix = self.train_step(self.train_batches)
            progress["epoch_loss"].assign_add(tf.cast(loss, tf.float64))
            progress["epoch_confusion"].assign_add(matrix)
            progress["step"].assign(step + 1)
            if settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 \
                    and step + 1 < settings.steps_per_epoch:
                self.manager.save()
        val_loss, val_count, val_confusion = self.validate()
        mean_iou, pixel_accuracy = scores(progress["epoch_confusion"].numpy())
        val_mean_iou, val_pixel_accuracy = scores(val_confusion)
        row = {"epoch": epoch, "learning_rate": float(self.optimizer.learning_rate.numpy()),
               "loss": float(progress["epoch_loss"].numpy()) / settings.steps_per_epoch,
               "mean_iou": mean_iou, "pixel_accuracy": pixel_accuracy,
               "val_loss": val_loss / max(val_count, 1.0),
               "val_mean_iou": val_mean_iou, "val_pixel_accuracy": val_pixel_accuracy}
        if settings.verbose == 1:
            print(f"epoch {epoch + 1}/{settings.epochs}: " + ", ".join(
                f"{key} {value:.4f}" for key, value in row.items() if key != "epoch"), flush=True)
        end_of_epoch(progress, val_mean_iou, self.optimizer, self.plateau_patience)
        if int(progress["best_epoch"].numpy()) == epoch + 1:
            best = self.state.best_model if self.chief else self.own_folder / "best.keras"
            with atomic_path(best) as temporary:
                self.model.save(temporary)
        if self.chief:
            append_history(self.state.history, row)
        self.manager.save()

    def validate(self) -> tuple[float, float, object]:
        """Summed per-sample loss, sample count and confusion over the validation set, all workers'."""
        import numpy as np

        iterator = iter(self.validation_batches)
        loss_sum = count = 0.0
        matrix = np.zeros((self.num_classes, self.num_classes))
        for _ in range(self.validation_steps):
            loss, samples, step_matrix = self.validate_step(iterator)
            loss_sum, count = loss_sum + float(loss), count + float(samples)
            matrix += step_matrix.numpy()
        return loss_sum, count, matrix

    def finish(self) -> tuple[int, float]:
        if not self.chief:
            shutil.rmtree(self.own_folder, ignore_errors=True)
        elif not self.state.best_model.exists():
            raise RuntimeError("training produced no checkpoint (validation mean IoU never improved)")
        return int(self.progress["best_epoch"].numpy()), float(self.progress["best"].numpy())


def end_of_epoch(progress: dict, val_mean_iou: float, optimizer, plateau_patience: int) -> None:
    """Keras's ModelCheckpoint(best), EarlyStopping and ReduceLROnPlateau on validation mean IoU."""
    import tensorflow as tf

    epoch = int(progress["epoch"].numpy())
    if val_mean_iou > float(progress["best"].numpy()):
        progress["best"].assign(val_mean_iou)
        progress["best_epoch"].assign(epoch + 1)
        progress["stop_wait"].assign(0)
    else:
        progress["stop_wait"].assign_add(1)
    if val_mean_iou > float(progress["plateau_best"].numpy()) + PLATEAU_MIN_DELTA:
        progress["plateau_best"].assign(val_mean_iou)
        progress["plateau_wait"].assign(0)
    else:
        progress["plateau_wait"].assign_add(1)
        if int(progress["plateau_wait"].numpy()) >= plateau_patience:
            optimizer.learning_rate = float(optimizer.learning_rate.numpy()) * PLATEAU_FACTOR
            progress["plateau_wait"].assign(0)
    progress["learning_rate"].assign(float(optimizer.learning_rate.numpy()))
    progress["epoch"].assign(epoch + 1)
    progress["step"].assign(0)
    progress["epoch_loss"].assign(0.0)
    progress["epoch_confusion"].assign(tf.zeros_like(progress["epoch_confusion"]))


def task_name(strategy) -> str:
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}-{resolver.task_id}"


def all_agree(strategy, value: int) -> bool:
    """Whether every replica holds the same `value`: (sum of squares) x n == (sum)^2 only then."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return True
    number = tf.constant(float(value), tf.float64)

    @tf.function
    def sums():
        per_replica = strategy.run(lambda: tf.stack([number, number * number]))
        return strategy.reduce("SUM", per_replica, axis=None)

    total, squares = (float(x) for x in sums())
    return abs(squares * strategy.num_replicas_in_sync - total * total) < 0.5


def trim_history(history: Path, epochs: int) -> None:
    """Keep the rows of the epochs the checkpoint holds: one written after it was saved goes."""
    if not history.exists():
        return
    with history.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < epochs]
    with atomic_path(history) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def append_history(history: Path, row: dict) -> None:
    exists = history.exists()
    with history.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, HISTORY_COLUMNS)
        if not exists:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())
