"""Mixed precision under the accuracy budget: keep the worst-quantised tensors in float until int8 passes.

The export calls `search_float_layers` with its own `score` step (convert, segment, measure a
candidate), so this module knows the search and nothing of how a variant is scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.job import ConvertedVariant, ExportJob
from export.report import ExportReport
from unet.cli import raise_if_terminated
from unet.runtime.backends import LiteRTBackend
from unet.runtime.preprocess import preprocess
from unet.runtime.timing import interleaved_latency
from unet.runtime.variants import variant_path

Score = Callable[[ExportJob, ConvertedVariant], tuple[dict, LiteRTBackend]]

SEARCH_MAX_STEPS = 8


def search_float_layers(
    job: ExportJob, saved_model: Path, workdir: Path, statistics: list[dict], report: ExportReport,
    converted: list[ConvertedVariant], backends: dict[str, LiteRTBackend], score: Score,
) -> None:
    """Keep the worst-quantised layers in float, 1, 2, 4, ... at a time, until int8 passes the gate.

    Layers come from `float_groups`. Stops at the first candidate that passes, or when one is
    larger than `search_max_size_ratio` of float32 or slower than `search_max_latency_ratio`
    times float32 (then int8 stays as it was). Each step goes into report.float_layer_search;
    the passing list into the metadata (variants.int8.float_tensors), for the next export.
    """
    options, groups = job.options, float_groups(statistics)
    float32 = next((c for c in converted if c.variant == "float32"), None)
    tensor = preprocess(job.images[0], job.metadata)[0]
    limits = {"size_bytes": options.search_max_size_ratio * len(float32.tflite_bytes) if float32 else None,
              "p50_ms": options.search_max_latency_ratio * p50_ms(backends["float32"], tensor)
              if float32 else None}
    original_row, steps, count = report.variants["int8"], [], 1
    print(f"-- searching float layers: int8 fails the gate; {len(groups)} layers ranked by error")
    while len(steps) < SEARCH_MAX_STEPS:
        tensors = sorted({name for group in groups[:count] for name in group})
        if len(tensors) >= len(statistics):
            steps.append({"float_tensors": tensors, "stopped": "would keep the whole model in float",
                          "passed": False, "size_bytes": None, "p50_ms": None, "mean_iou_drop": None})
            break
        candidate, backend, step = try_float_tensors(job, saved_model, workdir, tensors, report, tensor,
                                                     score)
        steps.append(step)
        if step["passed"]:
            converted[:] = [candidate if c.variant == "int8" else c for c in converted]
            backends["int8"] = backend
            break
        over = [name for name, limit in limits.items() if limit and step[name] > limit]
        if over:
            step["stopped"] = "size limit" if "size_bytes" in over else "latency limit"
            break
        if count >= len(groups):
            break
        count = min(2 * count, len(groups))
    if not steps[-1]["passed"]:
        report.variants["int8"] = original_row
    report.float_layer_search = {"limits": limits, "max_size_ratio": options.search_max_size_ratio,
                                    "max_latency_ratio": options.search_max_latency_ratio, "steps": steps}


def try_float_tensors(
    job: ExportJob, saved_model: Path, workdir: Path, tensors: list[str], report: ExportReport,
    tensor: np.ndarray, score: Score,
) -> tuple[ConvertedVariant, LiteRTBackend, dict]:
    """Convert, score and gate int8 with `tensors` in float; leaves its row in the report."""
    from export.convert import convert_variant

    started = time.perf_counter()
    tflite_bytes = convert_variant(saved_model, "int8", job.representative, float_tensors=tuple(tensors))
    raise_if_terminated()
    final_path = variant_path(job.model_path, "int8")
    staged = workdir / f"search-{len(tensors)}.{final_path.name}"
    staged.write_bytes(tflite_bytes)
    seconds = round(time.perf_counter() - started, 2)
    candidate = ConvertedVariant("int8", final_path, staged, tflite_bytes, seconds)
    row, backend = score(job, candidate)
    row["float_tensors"] = tensors
    report.variants["int8"] = row
    verdict = job.options.gate(report)
    passed = not [failure for failure in verdict.failures if ": int8 " in failure]
    drop = verdict.drops["int8"]
    p50 = p50_ms(backend, tensor)
    print(f"   {len(tensors)} tensors in float: {len(tflite_bytes) / 1024:.0f} KiB, p50 {p50:.2f} ms, "
          f"drop {drop:.4f}: {'passes' if passed else 'fails'}")
    step = {"float_tensors": tensors, "size_bytes": len(tflite_bytes), "p50_ms": p50,
            "mean_iou_drop": drop, "passed": passed}
    return candidate, backend, step


def float_groups(statistics: list[dict]) -> list[tuple[str, ...]]:
    """Tensors to keep in float together, worst first: each erring tensor with the op after it.

    Ranked by absolute RMSE, the error passed on in the activations' own units: a tensor whose
    range one channel dominates gets a coarse scale and every other channel loses its signal,
    although its error in quantisation steps looks ordinary. Its consumer (the next op in
    execution order) joins it: otherwise the consumer quantises the float tensor again, with
    the same coarse scale.
    """
    in_order = sorted(statistics, key=lambda row: row["position"])
    following = {row["tensor"]: in_order[i + 1]["tensor"] for i, row in enumerate(in_order[:-1])}
    erring = [row for row in statistics if row["rmse"] > 0]
    by_error = sorted(erring, key=lambda row: row["rmse"], reverse=True)
    return [tuple(t for t in (row["tensor"], following.get(row["tensor"])) if t) for row in by_error]


def p50_ms(backend: LiteRTBackend, tensor: np.ndarray, runs: int = 10) -> float:
    return interleaved_latency({backend.name: backend.run}, tensor, runs)[backend.name]["p50_ms"]
