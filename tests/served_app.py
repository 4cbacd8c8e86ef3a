"""Start app.py in its own process, as every deployment does, and stop it after the tests."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def launched_app(log_path: Path, assets: Path | None = None):
    """(url, gradio client, pid) of a running `python app.py` on a free port; `assets` as UNET_ASSETS."""
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    if assets is not None:
        env["UNET_ASSETS"] = str(assets)
    # A file, not a pipe: an unread pipe fills up and blocks the server's next log write.
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
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
        process.kill()
        pytest.fail("app did not start within 120 s")
    print(f"app answered after {time.perf_counter() - started:.1f} s")
    try:
        yield url, client, process.pid
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
