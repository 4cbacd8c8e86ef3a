"""Why native int8 can be slower than float32 on one CPU and not another: a reproduction.

    python -m bench.int8_kernels [--runs 40] [--out bench/results/int8_kernels.json]

On one Xeon with AVX-512 VNNI and AMX, native LiteRT ran the brain-tissue model's int8 file
slower than its float32 file (and slower than LiteRT.js's WebAssembly build); on AVX2 and
AVX-512 VNNI hosts without AMX int8 takes about half float32's time. This bench separates the
suspects, every ratio measured within one run with interleaved calls:

- kernels: each shipped model's int8 and float32 files under XNNPACK (LiteRT's default) and
  under TFLite's built-in kernels (XNNPACK off), on 1 and 2 threads. If XNNPACK's int8 alone
  is slow, its int8 kernel choice for this CPU is the cause (AMX kernels among them).
- threads: 2 threads against 1 for each. A ratio near or above 1 points at threads spinning.
- channel width: one 3x3 convolution at 192x192 with 8, 16, 32 and 64 channels in and out,
  int8 (per-channel scales, as exported) against float32. If int8 loses only at narrow widths,
  the narrow layers are the cause, and wider first layers the project's fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from bench.results_file import machine, write_results
from unet.runtime.timing import interleaved_latency

REPO = Path(__file__).resolve().parents[1]
MODELS = ("brain-tissue", "nuclei", "shapes")
WIDTHS = (8, 16, 32, 64)
CONV_SIZE = 192
KERNELS = {"XNNPACK": "AUTO", "built-in kernels": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}


def runner(model: bytes | Path, threads: int, kernels: str):
    """A callable that runs the model once on a fixed random input."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    interpreter = Interpreter(**source, num_threads=threads,
                              experimental_op_resolver_type=getattr(OpResolverType, kernels))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        data = rng.integers(info.min, info.max, detail["shape"], endpoint=True).astype(detail["dtype"])
    else:
        data = rng.random(detail["shape"], dtype=np.float32)
    interpreter.set_tensor(detail["index"], data)

    def run(_: object) -> None:
        interpreter.invoke()

    return run


def shipped_model_rows(runs: int) -> list[dict]:
    rows = []
    for name in MODELS:
        folder = REPO / "assets" / name
        runners = {}
        for variant in ("int8", "float32"):
            for kernels, resolver in KERNELS.items():
                for threads in (1, 2):
                    runners[(variant, kernels, threads)] = runner(folder / f"{name}.{variant}.tflite",
                                                                  threads, resolver)
        timings = interleaved_latency({str(k): v for k, v in runners.items()}, None, runs)
        p50 = {key: timings[str(key)]["p50_ms"] for key in runners}
        for kernels in KERNELS:
            for threads in (1, 2):
                int8, float32 = p50[("int8", kernels, threads)], p50[("float32", kernels, threads)]
                rows.append({"model": name, "kernels": kernels, "threads": threads,
                             "int8_ms": round(int8, 2), "float32_ms": round(float32, 2),
                             "int8_over_float32": round(int8 / float32, 3),
                             "two_threads_over_one_int8": round(p50[("int8", kernels, 2)]
                                                                / p50[("int8", kernels, 1)], 3)})
    return rows


def convolution_files(width: int) -> dict[str, bytes]:
    """One 3x3 convolution (+ReLU) with `width` channels in and out, converted as the export
    converts (export.convert): float32 and full-integer int8."""
    import tempfile

    import keras

    from export.convert import convert_variant, export_saved_model

    inputs = keras.Input((CONV_SIZE, CONV_SIZE, width), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs))
    rng = np.random.default_rng(width)

    def representative():
        for _ in range(8):
            yield [rng.random((1, CONV_SIZE, CONV_SIZE, width), dtype=np.float32)]

    with tempfile.TemporaryDirectory() as workdir:
        saved_model = export_saved_model(model, Path(workdir) / "saved_model")
        return {variant: convert_variant(saved_model, variant, representative)
                for variant in ("float32", "int8")}


def width_rows(runs: int) -> list[dict]:
    rows = []
    for width in WIDTHS:
        files = convolution_files(width)
        runners = {f"{variant} {threads}": runner(content, threads, "AUTO")
                   for variant, content in files.items() for threads in (1, 2)}
        timings = interleaved_latency(runners, None, runs)
        for threads in (1, 2):
            int8, float32 = timings[f"int8 {threads}"]["p50_ms"], timings[f"float32 {threads}"]["p50_ms"]
            rows.append({"channels": width, "threads": threads, "int8_ms": round(int8, 3),
                         "float32_ms": round(float32, 3), "int8_over_float32": round(int8 / float32, 3)})
    return rows


def markdown(results: dict) -> str:
    lines = ["# int8 against float32, native LiteRT: kernels, threads, channel width", "",
             f"Machine: {results['machine']}. {results['runs']} interleaved rounds per table; p50 per call.",
             "", "| model | kernels | threads | int8 | float32 | int8 / float32 | int8, 2 threads / 1 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in results["shipped_models"]:
        lines.append(f"| {row['model']} | {row['kernels']} | {row['threads']} | {row['int8_ms']:.2f} ms | "
                     f"{row['float32_ms']:.2f} ms | {row['int8_over_float32']:.2f} | "
                     f"{row['two_threads_over_one_int8']:.2f} |")
    lines += ["", f"One 3x3 convolution at {CONV_SIZE}x{CONV_SIZE}, XNNPACK:", "",
              "| channels in and out | threads | int8 | float32 | int8 / float32 |",
              "|---:|---:|---:|---:|---:|"]
    for row in results["convolution_width"]:
        lines.append(f"| {row['channels']} | {row['threads']} | {row['int8_ms']:.3f} ms | "
                     f"{row['float32_ms']:.3f} ms | {row['int8_over_float32']:.2f} |")
    lines += ["", "Reading it: an int8 / float32 ratio above 1 under XNNPACK but not under the built-in "
              "kernels names XNNPACK's int8 kernels for this CPU; a ratio above 1 only at 8-16 channels "
              "names the narrow layers; 2 threads / 1 near or above 1 names the threads."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.int8_kernels", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "int8_kernels.json")
    args = parser.parse_args(argv)
    results = {"machine": machine(), "runs": args.runs, "shipped_models": shipped_model_rows(args.runs),
               "convolution_width": width_rows(args.runs)}
    write_results(args.out, results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
