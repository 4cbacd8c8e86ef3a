"""Training throughput (images/s) of the shipped configurations: a benchmark, not a test.

    python -m bench.train_speed [--steps 20] [--out bench/results/train_speed.json]

Times `train_on_batch` on random data after warm-up, so only the model's forward and
backward passes are measured (the input pipeline is measured separately).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from bench.results_file import write_results

CONFIGURATIONS = {
    "simple_unet@128": {"builder": "simple", "size": 128, "batch": 8},
    "build_unet@256 (default)": {"builder": "unet", "size": 256, "batch": 8},
}


def images_per_second(builder: str, size: int, batch: int, steps: int) -> float:
    import keras

    from unet.training.losses import crossentropy_dice_loss
    from unet.training.models import build_unet, simple_unet

    model = simple_unet((size, size, 1)) if builder == "simple" else build_unet((size, size, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=crossentropy_dice_loss)
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 1), dtype=np.float32)
    targets = (images > 0.5).astype(np.float32)
    for _ in range(3):
        model.train_on_batch(images, targets)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, targets)
    return steps * batch / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_speed.json"))
    args = parser.parse_args()
    import tensorflow as tf

    results = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "tensorflow": tf.__version__},
        "steps": args.steps,
        "configurations": {},
    }
    for name, spec in CONFIGURATIONS.items():
        rate = images_per_second(spec["builder"], spec["size"], spec["batch"], args.steps)
        results["configurations"][name] = {**spec, "images_per_second": round(rate, 2)}
        print(f"{name:<28} batch {spec['batch']}: {rate:8.2f} images/s")
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
