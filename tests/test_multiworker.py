"""Training across hosts: two worker processes on 127.0.0.1, each with its own TF_CONFIG.

Must show: both exit 0, only the chief writes the model, metadata and history; the loss after
the first epoch is one device's on the whole global batch; a worker killed after its first
checkpoint takes the job down, and the same command, run again, resumes without repeating or
losing an epoch.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
TRAIN = ["-m", "unet.train", "--synthetic", "--synthetic-count", "32", "--input-size", "32", "--depth", "2",
         "--base-filters", "4", "--samples-per-epoch", "32", "--batch-size", "8", "--seed", "3",
         "--name", "discs", "--quiet"]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def start_workers(out: Path, arguments: list[str], ports: list[int], logs: Path, tag: str) -> list:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(len(ports)):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        log = (logs / f"worker{index}.{tag}.log").open("w")
        workers.append(subprocess.Popen(
            [sys.executable, *TRAIN, *arguments, "--strategy", "multiworker", "--out", str(out)], cwd=REPO,
            env={**ENV, "TF_CONFIG": tf_config}, stdout=log, stderr=subprocess.STDOUT, text=True))
    return workers


def finish(workers: list, timeout: float = 170) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for each in workers:
                each.kill()
            pytest.fail("a worker did not finish in time")
    return codes


def history(folder: Path) -> list[dict]:
    with (folder / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def train_alone(out: Path, arguments: list[str]) -> list[dict]:
    """One device, the whole global batch: the reference the workers must match."""
    completed = subprocess.run([sys.executable, *TRAIN, *arguments, "--out", str(out)], cwd=REPO, env=ENV,
                               capture_output=True, text=True, timeout=170)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return history(out)


def test_two_workers_train_as_one_device_on_the_global_batch(tmp_path):
    arguments = ["--epochs", "2"]
    workers = start_workers(tmp_path / "cluster", arguments, free_ports(2), tmp_path, "run")
    assert finish(workers) == [0, 0], [(tmp_path / f"worker{i}.run.log").read_text()[-2000:] for i in (0, 1)]
    out = tmp_path / "cluster"
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "discs.json", "discs.keras",
                                                     "evaluation.json", "history.csv"]
    assert "the chief wrote the model" in (tmp_path / "worker1.run.log").read_text()
    metadata = json.loads((out / "discs.json").read_text())
    assert metadata["training"]["strategy"] == "multiworker"
    from unet.runtime.segmenter import Segmenter

    segmenter = Segmenter.from_path(out / "discs.keras")
    assert segmenter.segment(np.zeros((40, 48), np.uint8)).segmentation.class_mask.shape == (40, 48)
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert 0.0 <= evaluation["mean_iou"] <= 1.0

    cluster_rows, alone_rows = history(out), train_alone(tmp_path / "alone", arguments)
    assert [row["epoch"] for row in cluster_rows] == ["0", "1"]
    for cluster_row, alone_row in zip(cluster_rows, alone_rows, strict=True):
        cluster_loss, alone_loss = float(cluster_row["loss"]), float(alone_row["loss"])
        print(f"epoch {cluster_row['epoch']}: 2 workers {cluster_loss:.8f}, one device {alone_loss:.8f}")
        assert abs(cluster_loss - alone_loss) <= 1e-3 * abs(alone_loss)


def test_a_killed_worker_stops_the_job_and_the_same_command_resumes_it(tmp_path):
    arguments = ["--epochs", "4", "--checkpoint-every", "1"]
    out, ports = tmp_path / "cluster", free_ports(2)
    workers = start_workers(out, arguments, ports, tmp_path, "first")
    first_checkpoint = out / ".discs.training" / "checkpoints-worker-1"
    deadline = time.monotonic() + 120
    while not any(first_checkpoint.glob("*.index")):
        assert time.monotonic() < deadline and workers[1].poll() is None, "worker 1 never checkpointed"
        time.sleep(0.05)
    os.kill(workers[1].pid, signal.SIGKILL)
    chief_code, _ = finish(workers)
    chief_log = (tmp_path / "worker0.first.log").read_text()
    print(chief_log[-1500:])
    assert chief_code != 0, "the chief went on without its peer"
    assert not (out / "discs.keras").exists()
    saved = json.loads((out / ".discs.training" / "settings.json").read_text())
    assert saved["strategy"] == "multiworker"

    workers = start_workers(out, arguments, ports, tmp_path, "again")
    assert finish(workers) == [0, 0], (tmp_path / "worker0.again.log").read_text()[-3000:]
    resumed = (tmp_path / "worker0.again.log").read_text()
    assert "resuming from ckpt-" in resumed, resumed[-2000:]
    print(next(line for line in resumed.splitlines() if "resuming" in line))
    rows = history(out)
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3"]
    assert not (out / ".discs.training").exists()
    from unet.training.models import load_model

    assert load_model(str(out / "discs.keras")).count_params() > 0
    # Resumed mid-epoch, the run is the run it would have been: the data stream is a function
    # of (seed, position) and the state of everything else was in the checkpoint.
    alone = train_alone(tmp_path / "alone", arguments)
    for resumed_row, alone_row in zip(rows, alone, strict=True):
        assert abs(float(resumed_row["loss"]) - float(alone_row["loss"])) <= 1e-3 * float(alone_row["loss"])
        assert abs(float(resumed_row["val_mean_iou"]) - float(alone_row["val_mean_iou"])) <= 1e-3
