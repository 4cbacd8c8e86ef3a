"""Training throughput (images/s) of the shipped configurations: a benchmark, not a test.

    python -m bench.train_speed [--steps 20] [--out bench/results/train_speed.json]

Times `train_on_batch` on random data after warm-up, so only the model's forward and
backward passes are measured. Then the shipped nuclei recipe as it really trains (its input
pipeline and the training loop's step), with and without the U-Net paper's border weight map,
in interleaved bursts: the price of `--border-weight` in images per second, and the one-off
time to compute the maps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from bench.results_file import machine, write_results

REPO = Path(__file__).resolve().parents[1]
NUCLEI_METADATA = REPO / "assets" / "nuclei" / "nuclei.json"
BORDER_WEIGHT = {"border_weight": 10.0, "border_sigma": 5.0}

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


def nuclei_recipe_rates(steps: int, bursts: int = 4) -> dict:
    """Images/s of the shipped nuclei recipe's real training step, plain and border-weighted."""
    import dataclasses
    import shlex
    import tempfile

    from unet.runtime.metadata import load_metadata
    from unet.train import parse_args
    from unet.training import loop
    from unet.training.pipeline import validation_arrays
    from unet.training.trainer import build_metadata, build_model, load_training_data, train_stream

    command = load_metadata(NUCLEI_METADATA).training["command"]
    # A step's speed does not depend on the weights it starts from, and the run the shipped
    # model started from (its --init-weights) lives in a run folder a clean clone lacks.
    plain = dataclasses.replace(parse_args(shlex.split(command)[3:]), init_weights=None)
    weighted = dataclasses.replace(plain, **BORDER_WEIGHT)
    started = time.perf_counter()
    data = load_training_data(weighted)
    loading_with_maps = time.perf_counter() - started
    started = time.perf_counter()
    load_training_data(plain)
    loading_without = time.perf_counter() - started
    metadata = build_metadata(plain, data)
    strategy = loop.make_strategy("none")
    validation = validation_arrays(data.validation_images[:4], data.validation_targets[:4], metadata)
    runs = {}
    candidates = (("plain", plain, dataclasses.replace(data, train_pixel_weights=None)),
                  ("border weight", weighted, data))
    for name, config, config_data in candidates:
        settings = loop.LoopSettings(epochs=1, batch_size=config.batch_size, steps_per_epoch=steps,
                                     learning_rate=config.learning_rate, patience=1, loss=config.loss,
                                     seed=config.seed, checkpoint_every=0, verbose=0)
        state = loop.TrainingState(Path(tempfile.mkdtemp()), "speed")
        training = loop.Training(settings, lambda _sync, c=config: build_model(c, metadata), None, validation,
                                 metadata.num_classes, state, strategy)
        stream = train_stream(config, config_data, metadata)(0, 0, 1, config.batch_size)
        iterator = iter(strategy.experimental_distribute_dataset(stream))
        for _ in range(3):
            training.train_step(iterator)
        runs[name] = {"training": training, "iterator": iterator, "seconds": 0.0, "batch": config.batch_size}
    for _ in range(bursts):
        for run in runs.values():
            started = time.perf_counter()
            for _ in range(steps):
                run["training"].train_step(run["iterator"])
            run["seconds"] += time.perf_counter() - started
    rates = {name: bursts * steps * run["batch"] / run["seconds"] for name, run in runs.items()}
    return {
        "recipe": command,
        "border_weight": BORDER_WEIGHT,
        "images_per_second": {name: round(rate, 2) for name, rate in rates.items()},
        "border_weight_cost": round(1.0 - rates["border weight"] / rates["plain"], 4),
        "weight_maps_seconds": round(loading_with_maps - loading_without, 1),
        "training_images": len(data.train_images),
        "method": f"{bursts} interleaved bursts of {steps} steps each, after 3 warm-up steps",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_speed.json"))
    args = parser.parse_args()
    import tensorflow as tf

    results = {
        "machine": machine(),
        "tensorflow": tf.__version__,
        "steps": args.steps,
        "configurations": {},
    }
    for name, spec in CONFIGURATIONS.items():
        rate = images_per_second(spec["builder"], spec["size"], spec["batch"], args.steps)
        results["configurations"][name] = {**spec, "images_per_second": round(rate, 2)}
        print(f"{name:<28} batch {spec['batch']}: {rate:8.2f} images/s")
    nuclei = nuclei_recipe_rates(args.steps)
    results["nuclei recipe, real training step"] = nuclei
    print(f"nuclei recipe: {nuclei['images_per_second']} images/s; the border weight costs "
          f"{nuclei['border_weight_cost']:.1%}; its maps took {nuclei['weight_maps_seconds']} s to compute")
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
