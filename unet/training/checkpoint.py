"""A Keras callback that keeps the best model so far, written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import keras

from unet.runtime.atomic import atomic_path


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever `monitor` improves, via a temporary file and a rename."""

    def __init__(self, path: Path, monitor: str) -> None:
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch = -1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not value > self.best:
            return
        self.best, self.best_epoch = float(value), epoch + 1
        with atomic_path(self.path) as temporary:
            self.model.save(temporary)
