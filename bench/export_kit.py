"""The export kit on a U-Net the project did not build: the keras-io Oxford Pets model, 160x160x3.

    python -m bench.export_kit [--runs 50]

Converts the model to float32 and int8 as it is (`--no-rewrite`) and with the export's
rewrites, then reports for each file the op counts, XNNPACK partitions and ops outside
XNNPACK, and the latency of all four files measured in one interleaved run (all threads and
one thread). Weights are random: latency does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.results_file import machine, write_results
from unet.runtime.backends import LiteRTBackend
from unet.runtime.timing import interleaved_latency

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SIZE = (160, 160)
CLASSES = 3
SETTLE_S = 0.02


def keras_io_unet(img_size: tuple[int, int] = SIZE, num_classes: int = CLASSES,
                  interpolation: str = "nearest", filters: tuple[int, ...] = (32, 64, 128, 256)):
    """The keras-io "Image segmentation with a U-Net-like architecture" model (SeparableConv2D,
    residual adds, UpSampling2D); the default `filters` are the published ones."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(*img_size, 3))
    x = layers.Conv2D(filters[0], 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous = x
    for width in filters[1:]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(width, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(width, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(width, 1, strides=2, padding="same")(previous)
        x = layers.add([x, residual])
        previous = x
    for width in reversed(filters):
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(width, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(width, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.UpSampling2D(2, interpolation=interpolation)(x)
        residual = layers.UpSampling2D(2, interpolation=interpolation)(previous)
        residual = layers.Conv2D(width, 1, padding="same")(residual)
        x = layers.add([x, residual])
        previous = x
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same", name="head")(x)
    return keras.Model(inputs, outputs)


def convert_both(model, workdir: Path, label: str) -> dict[str, Path]:
    from export.convert import convert_variant, export_saved_model

    rng = np.random.default_rng(0)
    calibration = [rng.random((1, *SIZE, 3), dtype=np.float32) for _ in range(16)]
    saved_model = export_saved_model(model, workdir / f"saved-{label}")
    paths = {}
    for variant in ("float32", "int8"):
        path = workdir / f"pets-{label}.{variant}.tflite"
        path.write_bytes(convert_variant(saved_model, variant, lambda: ([t] for t in calibration)))
        paths[f"{variant} {label}"] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    from export.graph_health import graph_health
    from export.rewrite import rewrite_for_tflite

    parser = argparse.ArgumentParser(prog="python -m bench.export_kit", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "export_kit.json")
    args = parser.parse_args(argv)
    model = keras_io_unet()
    rewritten, rewrites = rewrite_for_tflite(model)
    with tempfile.TemporaryDirectory() as scratch:
        paths = {**convert_both(model, Path(scratch), "as is"),
                 **convert_both(rewritten, Path(scratch), "rewritten")}
        graphs = {name: graph_health(path).to_dict() for name, path in paths.items()}
        tensor = np.random.default_rng(1).random((1, *SIZE, 3), dtype=np.float32)
        runners = {}
        for name, path in paths.items():
            runners[f"{name}, {os.cpu_count()} threads"] = LiteRTBackend(path, os.cpu_count()).run
            runners[f"{name}, 1 thread"] = LiteRTBackend(path, 1).run
        latency = interleaved_latency(runners, tensor, args.runs, settle_s=SETTLE_S)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": machine()},
               "runs": args.runs, "rewrites": [r.to_dict() for r in rewrites], "graphs": graphs,
               "latency": latency}
    write_results(args.out, results, render_markdown(results))
    return 0


def render_markdown(results: dict) -> str:
    host = results["machine"]
    lines = ["# Export kit on the keras-io Oxford Pets U-Net (160x160x3, 3 classes)", "",
             f"Machine: {host['platform']}, {host['cpu']}. "
             f"{results['runs']} interleaved runs per file after warm-up. Rewrites: "
             f"{len(results['rewrites'])} layers (UpSampling2D nearest and unfusable int8 ReLUs).", "",
             "| file | ops | XNNPACK partitions | outside XNNPACK | p50 ms, all threads | p50 ms, 1 thread |",
             "|---|---:|---:|---|---:|---:|"]
    cpus = host["cpus"]
    for name, graph in results["graphs"].items():
        outside = ", ".join(f"{n} {op}" for op, n in graph["outside_delegate"].items()) or "none"
        all_threads = results["latency"][f"{name}, {cpus} threads"]["p50_ms"]
        one_thread = results["latency"][f"{name}, 1 thread"]["p50_ms"]
        lines.append(f"| {name} | {sum(graph['op_counts'].values())} | {graph['partitions']} | {outside} | "
                     f"{all_threads:.2f} | {one_thread:.2f} |")
    lines.append("")
    for label in ("as is", "rewritten"):
        for threads in (f"{cpus} threads", "1 thread"):
            ratio = (results["latency"][f"float32 {label}, {threads}"]["p50_ms"]
                     / results["latency"][f"int8 {label}, {threads}"]["p50_ms"])
            lines.append(f"- {label}, {threads}: int8 is {ratio:.2f}x as fast as float32.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
