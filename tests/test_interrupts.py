"""Must show: killing a training or export run midway (SIGTERM or SIGKILL) leaves the previous
model, its metadata and its report intact and loadable."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from folders import file_digests

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    started = time.monotonic()
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {process.stderr.read()[-2000:]}")
        if time.monotonic() - started > timeout:
            process.kill()
            pytest.fail("the run never reached the point to interrupt")
        time.sleep(0.2)


TRAIN = ["-m", "unet.train", "--synthetic", "--synthetic-count", "64", "--input-size", "64", "--depth", "3",
         "--base-filters", "16", "--epochs", "200", "--patience", "200", "--samples-per-epoch", "32",
         "--name", "discs", "--quiet"]
EXPORT = [str(REPO / "export" / "to_tflite.py"), "--calib-n", "200", "--model"]


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("command", ["train", "export"])
def test_interrupted_run_keeps_the_previous_model_and_report(trained_and_exported, tmp_path, command, kill):
    source, _, _ = trained_and_exported
    folder = tmp_path / "discs"
    shutil.copytree(source, folder)
    before = file_digests(folder, include_hidden=False)
    if command == "train":
        arguments = [*TRAIN, "--out", str(folder)]
        # The first best-so-far model is in the run's state folder: training is well under way.
        reached = lambda: (folder / ".discs.training" / "best.keras").exists()  # noqa: E731
    else:
        arguments = [*EXPORT, str(folder / "discs.keras")]
        converting = tmp_path / "export.log"
        reached = lambda: "-- converting" in converting.read_text()  # noqa: E731
    log = (tmp_path / "export.log").open("w") if command == "export" else subprocess.PIPE
    process = subprocess.Popen([sys.executable, *arguments], cwd=REPO, env=ENV, stdout=log,
                               stderr=subprocess.PIPE, text=True)
    wait_for(reached, process)
    process.send_signal(kill)
    process.wait(timeout=120)
    assert process.returncode == (143 if kill == signal.SIGTERM else -signal.SIGKILL)
    assert file_digests(folder, include_hidden=False) == before
    if kill == signal.SIGTERM:
        assert "terminated; nothing was replaced" in process.stderr.read()
    if command == "train":
        # What is left is the run's state, which the same command resumes from.
        assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == [".discs.training"]
    else:
        assert kill == signal.SIGKILL or not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    from unet.runtime.segmenter import Segmenter

    image = np.zeros((48, 40), dtype=np.uint8)
    for model in ("discs.keras", "discs.int8.tflite"):
        assert Segmenter.from_path(folder / model).segment(image).segmentation.class_mask.shape == (48, 40)


def test_sigterm_swallowed_by_native_code_still_ends_the_run(monkeypatch, capsys):
    """TFLite's calibration calls Python from C++ and may catch the raise; the flag remains."""
    import os

    from unet import cli

    monkeypatch.setattr(cli, "_termination_requested", False)
    previous_handler = signal.getsignal(signal.SIGTERM)
    committed = []

    def export_like_main() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        except BaseException:  # what a native caller of a Python callback can do
            pass
        cli.raise_if_terminated()
        committed.append("files")
        return 0

    try:
        assert cli.run_cli(export_like_main) == 143
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    assert committed == []
    assert "terminated; nothing was replaced" in capsys.readouterr().err
