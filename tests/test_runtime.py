"""The runtime layer's timing: what the app's latency table is made of."""

import time

import numpy as np
import pytest

from unet.runtime.backends import Backend
from unet.runtime.segmenter import Segmenter

CALL_S = 0.002


class CountingBackend(Backend):
    """A stand-in model that takes CALL_S and returns its call number everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        self.calls += 1
        time.sleep(CALL_S)
        return np.full((*tensor.shape[:3], 1), self.calls, dtype=np.float32)


def test_timed_run_keeps_the_warm_up_output_and_times_only_the_runs_after_it(binary_metadata):
    backend = CountingBackend()
    segmenter = Segmenter(backend, binary_metadata)
    calls_to_check_fit = backend.calls
    tensor = np.zeros((1, 32, 32, 1), dtype=np.float32)
    timing = segmenter.timed_run(tensor, runs=3)
    assert backend.calls - calls_to_check_fit == 4
    assert (timing.output == calls_to_check_fit + 1).all()
    assert len(timing.latencies_ms) == 3 and min(timing.latencies_ms) >= 1000 * CALL_S
    assert timing.warmup_ms >= 1000 * CALL_S


def test_timed_run_needs_at_least_one_run(binary_metadata):
    segmenter = Segmenter(CountingBackend(), binary_metadata)
    with pytest.raises(ValueError, match="at least 1"):
        segmenter.timed_run(np.zeros((1, 32, 32, 1), dtype=np.float32), runs=0)


class RecordingBackend:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, tensor: np.ndarray) -> np.ndarray:
        self.log.append(self.name)
        return tensor


def test_interleaved_latency_changes_the_order_every_round_and_times_every_run():
    from unet.runtime.timing import interleaved_latency

    log: list[str] = []
    backends = {name: RecordingBackend(name, log).run for name in "abcd"}
    latency = interleaved_latency(backends, np.zeros((1, 2, 2, 1), dtype=np.float32), runs=12, settle_s=0.001)
    assert {name: row["runs"] for name, row in latency.items()} == dict.fromkeys("abcd", 12)
    rounds = [tuple(log[start:start + 4]) for start in range(4, len(log), 4)]
    assert all(sorted(order) == list("abcd") for order in rounds)
    assert len(set(rounds)) > 1
    assert len({order[0] for order in rounds}) > 1, "the same backend led every round"
