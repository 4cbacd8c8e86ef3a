"""Start app.py in its own process, as every deployment does, and stop it after the tests."""

import contextlib
import time
from pathlib import Path

import pytest

from bench.app_latency import server

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def launched_app(log_path: Path, assets: Path | None = None):
    """(url, gradio client, pid) of a running `python app.py` on a free port; `assets` as UNET_ASSETS."""
    from gradio_client import Client

    extra_env = {"UNET_ASSETS": str(assets)} if assets is not None else None
    with server([str(REPO / "app.py")], log_path, extra_env) as (url, process):
        started = time.perf_counter()
        client = None
        while time.perf_counter() - started < 120:
            if process.poll() is not None:
                pytest.fail(f"app exited early: {log_path.read_text()[-3000:]}")
            try:
                client = Client(url, verbose=False)
                break
            except Exception:
                time.sleep(0.5)
        if client is None:
            pytest.fail("app did not start within 120 s")
        print(f"app answered after {time.perf_counter() - started:.1f} s")
        try:
            yield url, client, process.pid
        finally:
            client.close()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
