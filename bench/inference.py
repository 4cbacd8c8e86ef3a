"""Inference speed of every shipped model on every backend, in one run: a benchmark, not a test.

    python -m bench.inference [--runs 50] [--out bench/results/inference.json]

Per model, on the model's own example image: Keras float32 (tf.function), LiteRT on every
shipped variant (float32, int8, int8-float-io), and the ONNX Runtime peer (float32 from
Keras's ONNX export, and static
int8 from ONNX Runtime's quantiser), each with 1 thread and all threads. Runs are interleaved
after a warm-up, in a new random order each round and after 50 ms of idle, so machine noise
and the previous backend's spinning threads hit every backend alike; ratios are to Keras
float32 from the same run. Also: FLOPs per image from the TensorFlow graph, achieved GFLOP/s against this
machine's float32 matrix-multiply peak (numpy, same run), the per-stage time of one request,
and each variant's validation accuracy from its export report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.results_file import machine, write_results
from unet.runtime.backends import Backend, KerasBackend, LiteRTBackend, model_call
from unet.runtime.imageio import read_image
from unet.runtime.metadata import load_metadata, model_metadata_files
from unet.runtime.preprocess import preprocess
from unet.runtime.segmenter import Segmenter, SegmentOptions
from unet.runtime.timing import interleaved_latency
from unet.runtime.variants import KERAS, SHIPPED_VARIANTS, BackendKind, litert, variant_path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
CPUS = os.cpu_count() or 1
# Idle before each timed call, long enough for ONNX Runtime's spinning threads to park.
SETTLE_S = 0.05


class OnnxRuntimeBackend(Backend):
    """The peer: an ONNX model in ONNX Runtime's CPU provider."""

    def __init__(self, path: Path, variant: str, num_threads: int) -> None:
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.path = path
        self.kind = BackendKind("onnxruntime", variant, num_threads if num_threads == 1 else None)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input_name = self.session.get_inputs()[0].name

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input_name: tensor})[0]


def onnx_models(keras_path: Path, calibration: list[np.ndarray], workdir: Path) -> dict[str, Path]:
    """float32 through Keras's ONNX export; int8 through ONNX Runtime's static quantiser."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from unet.training.models import load_model

    model = load_model(str(keras_path))
    model(calibration[0])  # Keras exports only a model that has been called
    float_path = workdir / f"{keras_path.stem}.onnx"
    model.export(str(float_path), format="onnx", verbose=False)
    models = {"float32": float_path}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.tensors = iter(calibration)

        def get_next(self):
            tensor = next(self.tensors, None)
            return None if tensor is None else {"image": tensor}

    int8_path = workdir / f"{keras_path.stem}.int8.onnx"
    try:
        quantize_static(str(float_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
        models["int8"] = int8_path
    except Exception as error:  # a peer that does not convert is reported, not fatal
        print(f"  ONNX Runtime int8 did not convert: {error}", file=sys.stderr)
    return models


def graph_flops(keras_path: Path, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward pass, counted by TensorFlow's profiler."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from unet.training.models import load_model

    model = load_model(str(keras_path))
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec(input_shape, tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(),
                                            cmd="op", options=options)
    return int(profile.total_float_ops)


def matmul_peak_gflops(size: int = 1024, seconds: float = 2.0) -> float:
    """This machine's float32 matrix-multiply rate through numpy's BLAS, all threads."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started) / 1e9


def examples_for(metadata_name: str) -> list[Path]:
    examples = sorted((REPO / "assets" / "examples").glob(f"{metadata_name}-*.png"))
    if not examples:
        raise FileNotFoundError(f"no example image for {metadata_name} in assets/examples")
    return examples


def stage_timings(model_path: Path, image_path: Path, runs: int) -> dict[str, float]:
    """Median ms per stage of one request on the int8 model: decode to overlay."""
    from unet.runtime.overlay import segmentation_overlay

    segmenter = Segmenter.from_path(model_path)
    image = read_image(image_path)
    samples: dict[str, list[float]] = {}
    for _ in range(runs + 1):
        result = segmenter.segment(image_path)
        started = time.perf_counter()
        segmentation_overlay(image, result.segmentation, segmenter.metadata.class_colours)
        timings = {**result.timings_ms, "overlay": (time.perf_counter() - started) * 1000.0}
        for stage, value in timings.items():
            samples.setdefault(stage, []).append(value)
    return {stage: round(float(np.median(values[1:])), 3) for stage, values in samples.items()}


POSTPROCESS_SIZE = (512, 512)


def instance_postprocess_timings(model_path: Path, image_path: Path, runs: int) -> dict[str, dict]:
    """At 512x512: the int8 model call, and instance post-processing by both methods of
    bench.separation, interleaved."""
    from PIL import Image

    from bench.separation import AT_IMAGE_SIZE, AT_MODEL_RESOLUTION, instances_at_image_size
    from unet.runtime.imageio import resize_array
    from unet.runtime.preprocess import postprocess

    segmenter = Segmenter.from_path(model_path, num_threads=CPUS)
    metadata = segmenter.metadata
    image = resize_array(read_image(image_path), POSTPROCESS_SIZE, Image.Resampling.BILINEAR)
    tensor, info = preprocess(image, metadata)
    output = segmenter.run_tensor(tensor)
    runners = {"int8 model call": segmenter.run_tensor,
               f"postprocess, {AT_MODEL_RESOLUTION}": lambda _: postprocess(output, info, metadata),
               f"postprocess, {AT_IMAGE_SIZE}":
                   lambda _: instances_at_image_size(output[0], POSTPROCESS_SIZE, metadata)}
    return interleaved_latency(runners, tensor, runs, settle_s=SETTLE_S)


def flips_cost(model_path: Path, image_path: Path, runs: int) -> dict[str, dict]:
    """The default path of the edge runner on the int8 model, decode to instances, without and
    with test-time flips (`--flips`), interleaved."""
    segmenter = Segmenter.from_path(model_path, num_threads=CPUS)
    default = SegmentOptions.default_for(segmenter.metadata)
    image = read_image(image_path)

    def segment_with(flips: bool) -> Callable[[None], object]:
        options = dataclasses.replace(default, flips=flips).to_kwargs()
        return lambda _: segmenter.segment(image, **options)

    runners = {"default path": segment_with(False), "default path, --flips": segment_with(True)}
    return interleaved_latency(runners, None, runs, settle_s=SETTLE_S)


def variant_accuracy(model_dir: Path, stem: str) -> dict[str, dict]:
    report = json.loads((model_dir / f"{stem}.export.json").read_text())
    rows = {KERAS.id: report.get("keras", {})}
    rows.update({litert(name).id: row for name, row in report["variants"].items()})
    accuracy = {}
    for name, row in rows.items():
        scores = row.get("accuracy", {})
        accuracy[name] = {"mean_iou": scores.get("mean_iou")}
        if "instance" in scores:
            accuracy[name]["instance_f1@0.5"] = scores["instance"].get("f1@0.5")
    return accuracy


def bench_model(metadata_path: Path, runs: int, peak: float) -> dict:
    metadata = load_metadata(metadata_path)
    model_dir, stem = metadata_path.parent, metadata_path.stem
    keras_path = model_dir / f"{stem}.keras"
    examples = examples_for(metadata.name)
    image_path = examples[0]
    tensor = preprocess(read_image(image_path), metadata)[0]
    print(f"== {metadata.name}: input {tensor.shape}, example {image_path.name}")
    backends: list[Backend] = [KerasBackend(keras_path)]
    for variant in SHIPPED_VARIANTS:
        path = variant_path(keras_path, variant)
        backends += [LiteRTBackend(path, num_threads=CPUS), LiteRTBackend(path, num_threads=1)]
    with tempfile.TemporaryDirectory() as workdir:
        calibration = [preprocess(read_image(path), metadata)[0] for path in examples]
        try:
            for variant, path in onnx_models(keras_path, calibration, Path(workdir)).items():
                backends += [OnnxRuntimeBackend(path, variant, CPUS), OnnxRuntimeBackend(path, variant, 1)]
        except ImportError as error:
            print(f"  no ONNX Runtime peer ({error}); `make bench` installs requirements-bench.txt",
                  file=sys.stderr)
        image = read_image(image_path)
        runners = {b.name: model_call(b, image, metadata) for b in backends}
        latency = interleaved_latency(runners, None, runs, settle_s=SETTLE_S)
    flops = graph_flops(keras_path, tensor.shape)
    keras_p50 = latency[KERAS.id]["p50_ms"]
    rows = {}
    for name, timing in latency.items():
        gflops = flops / (timing["p50_ms"] / 1000.0) / 1e9
        rows[name] = {**timing, "ratio_to_keras_p50": round(keras_p50 / timing["p50_ms"], 3),
                      "gflop_per_s": round(gflops, 2), "fraction_of_matmul_peak": round(gflops / peak, 4)}
        print(f"  {name:<28} p50 {timing['p50_ms']:8.2f} ms  p95 {timing['p95_ms']:8.2f} ms  "
              f"x{rows[name]['ratio_to_keras_p50']:.2f} vs Keras  {gflops:6.2f} GFLOP/s")
    result = {
        "input": list(tensor.shape), "example": image_path.name, "flops_per_image": flops,
        "latency": rows, "accuracy": variant_accuracy(model_dir, stem),
        "stages_ms_int8": stage_timings(model_dir / f"{stem}.int8.tflite", image_path, min(runs, 20)),
    }
    if metadata.mode == "instance":
        result["instance_postprocess_512"] = instance_postprocess_timings(
            model_dir / f"{stem}.int8.tflite", image_path, min(runs, 30))
        result["flips"] = flips_cost(model_dir / f"{stem}.int8.tflite", image_path, min(runs, 20))
    return result


def render_markdown(results: dict) -> str:
    lines = ["# Inference benchmark", "",
             f"Machine: {results['machine']['processor'] or results['machine']['platform']}, "
             f"{results['machine']['cpu']}; numpy float32 matmul peak "
             f"{results['matmul_peak_gflop_per_s']:.1f} GFLOP/s. Batch 1, {results['runs']} interleaved "
             "runs per backend after warm-up, each round in a new random order, each call after "
             f"{1000 * SETTLE_S:.0f} ms of idle; ratios are Keras float32 p50 / backend p50 from this run. "
             "GFLOP/s is the graph's FLOPs over p50; int8 rows do those operations in integers, so "
             "they can pass the float32 matmul peak.", ""]
    for name, model in results["models"].items():
        lines += [f"## {name} (input {'x'.join(map(str, model['input'][1:]))}, "
                  f"{model['flops_per_image'] / 1e9:.2f} GFLOP per image)", "",
                  "| backend | p50 ms | p95 ms | speed-up vs Keras | GFLOP/s | of matmul peak "
                  "| validation mean IoU |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for backend, row in model["latency"].items():
            accuracy = model["accuracy"].get(backend.removesuffix("-1thread"), {}).get("mean_iou")
            lines.append(f"| {backend} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                         f"{row['ratio_to_keras_p50']:.2f}x | {row['gflop_per_s']:.2f} | "
                         f"{100 * row['fraction_of_matmul_peak']:.1f}% | "
                         f"{'' if accuracy is None else f'{accuracy:.4f}'} |")
        stages = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in model["stages_ms_int8"].items())
        lines += ["", f"One request on LiteRT int8, median per stage: {stages}.", ""]
        if "instance_postprocess_512" in model:
            timings = model["instance_postprocess_512"]
            lines += ["Instance post-processing of a 512x512 image beside the int8 model call, "
                      "interleaved in this run:", "", "| step | p50 ms | p95 ms |", "|---|---:|---:|"]
            lines += [f"| {step} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} |"
                      for step, row in timings.items()]
            lines.append("")
        if "flips" in model:
            plain, flipped = model["flips"]["default path"], model["flips"]["default path, --flips"]
            lines += [f"The edge runner's default path on {model['example']} with LiteRT int8, decode to "
                      f"instances, interleaved: p50 {plain['p50_ms']:.1f} ms, and {flipped['p50_ms']:.1f} ms "
                      f"with test-time flips (`--flips`), {flipped['p50_ms'] / plain['p50_ms']:.2f}x.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--assets", type=Path, default=REPO / "assets")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "inference.json")
    args = parser.parse_args(argv)
    peak = matmul_peak_gflops()
    print(f"numpy float32 matmul peak: {peak:.1f} GFLOP/s")
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": CPUS,
                    "cpu": machine()},
        "runs": args.runs, "matmul_peak_gflop_per_s": round(peak, 2),
        "models": {path.stem: bench_model(path, args.runs, peak)
                   for path in model_metadata_files(args.assets)},
    }
    write_results(args.out, results, render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
