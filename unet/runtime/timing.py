"""Latency measurement shared by the export report, the app and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np


def elapsed_ms(start: float) -> float:
    """Milliseconds since `start`, a time.perf_counter() reading."""
    return (time.perf_counter() - start) * 1000.0


def percentiles_ms(latencies: list[float]) -> dict[str, float]:
    """{"p50_ms", "p95_ms", "runs"} of a list of latencies in milliseconds."""
    values = np.asarray(latencies, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "runs": len(latencies),
    }


def interleaved_latency(
    runners: Mapping[str, Callable[[np.ndarray | None], object]],
    tensor: np.ndarray | None,
    runs: int,
    settle_s: float = 0.0,
    seed: int = 0,
) -> dict[str, dict]:
    """p50/p95 ms per runner called with `tensor`, runs interleaved so noise hits every runner alike.

    Runners that hold their own input (`unet.runtime.backends.model_call`) are given None.

    Each round visits the runners in a new (seeded) random order, so no runner always runs
    right after the same neighbour. `settle_s` of idle before each timed call lets the previous
    runner's worker threads stop spinning: ONNX Runtime's keep a core busy after a call
    returns, which made LiteRT float32 on 2 threads 1.7x slower when it ran next.
    """
    for run in runners.values():
        run(tensor)
    names = list(runners)
    order = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        for index in order.permutation(len(names)):
            name = names[index]
            if settle_s:
                time.sleep(settle_s)
            start = time.perf_counter()
            runners[name](tensor)
            samples[name].append(elapsed_ms(start))
    return {name: percentiles_ms(values) for name, values in samples.items()}
