"""Forged `device_result` payloads through the app's HTTP queue, as any script could post them.

Each is refused in one line of the user's words, the server's resident memory grows by less
than 100 MB while it handles it, and a well-formed result afterwards still works.
"""

import base64
import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from served_app import launched_app

from tests.test_browser_files import png_data_url as png_url

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "assets" / "examples" / "shapes-generated-0.png"  # 160x160, 4 classes
MAX_GROWTH_BYTES = 100 * 1024 * 1024


def huge_png_url(width: int, height: int) -> str:
    """A valid PNG header for (width, height) and a few bytes of data: small to send, huge to decode."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + b"\0" * (4 * width)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(16)) + compressor.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class QueueClient:
    """The page's side of gradio's queue: upload, join with event data, read the outcome."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=120)
        config = self.http.get(url + "config").json()
        self.dependency = next(index for index, dependency in enumerate(config["dependencies"])
                               if any(target[1] == "device_result" for target in dependency["targets"]))
        self.trigger = next(target[0] for target in config["dependencies"][self.dependency]["targets"])
        uploaded = self.http.post(url + "gradio_api/upload", files={"files": EXAMPLE.open("rb")}).json()
        self.image = {"path": uploaded[0], "orig_name": EXAMPLE.name, "meta": {"_type": "gradio.FileData"}}

    def device_result(self, payload: object) -> dict:
        session = uuid.uuid4().hex
        body = {"data": [self.image, "shapes", "Keras float32", 0.5, 0.5, None], "event_data": payload,
                "fn_index": self.dependency, "trigger_id": self.trigger, "session_hash": session}
        # allow_nan: a forged timing may be Infinity, which Python's JSON reader accepts.
        self.http.post(self.url + "gradio_api/queue/join", content=json.dumps(body, allow_nan=True),
                       headers={"content-type": "application/json"}).raise_for_status()
        with self.http.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return message
        raise AssertionError("the queue closed without an outcome")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with launched_app(tmp_path_factory.mktemp("payloads") / "app.log") as (url, _, pid):
        yield QueueClient(url), pid


def good_payload() -> dict:
    classes = np.zeros((160, 160), np.int32)
    classes[40:80, 40:80] = 2
    return {"model": "shapes", "backend": "LiteRT.js int8-float-io (WASM, 2 threads)", "threads": 2,
            "cores": 2, "p50_ms": 3.2, "p95_ms": 4.1, "width": 160, "height": 160, "mask_png": png_url(classes),
            "instances_png": None}


FORGED = {
    "12000x12000 mask": ({"mask_png": huge_png_url(12000, 12000)}, "class mask is 12000x12000, the image 160x160"),
    "30000x30000 mask": ({"mask_png": huge_png_url(30000, 30000)}, "class mask is 30000x30000, the image 160x160"),
    "14000x14000 instances": ({"instances_png": huge_png_url(14000, 14000)},
                              "instance labels is 14000x14000, the image 160x160"),
    "class out of range": ({"mask_png": png_url(np.full((160, 160), 9, np.int32))},
                           "class mask holds 9, above the largest possible 3"),
    "non-numeric timing": ({"p50_ms": "abc"}, "p50_ms is not a number from 0"),
    "infinite timing": ({"p95_ms": float("inf")}, "p95_ms is not a number from 0"),
    "non-object payload": ([1, 2, 3], "the browser sent no on-device result"),
    "multi-megabyte string": ({"backend": "x" * 5_000_000}, "backend is not a short text"),
    "multi-megabyte mask": ({"mask_png": "data:image/png;base64," + "A" * 8_000_000},
                            "class mask is 8.0 MB, more than a 160x160 mask can take"),
    "unknown field": ({"extra": {"a": 1}}, "fields this server does not know: extra"),
}


@pytest.mark.parametrize("name", list(FORGED))
def test_a_forged_device_result_is_refused_in_one_line_within_bounded_memory(app, name):
    client, pid = app
    change, message = FORGED[name]
    payload = {**good_payload(), **change} if isinstance(change, dict) else change
    baseline, peak, done = resident_bytes(pid), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes(pid))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcome = client.device_result(payload)
    finally:
        done.set()
        watcher.join()
    error = (outcome.get("output") or {}).get("error")
    print(f"{name}: {error!r}; resident memory +{(peak[0] - baseline) / 1e6:.1f} MB")
    assert outcome.get("success") is False and error is not None
    assert message in error and "\n" not in error
    assert "Traceback" not in error and "object has no attribute" not in error
    assert peak[0] - baseline < MAX_GROWTH_BYTES


def test_a_well_formed_result_still_works_after_the_forged_ones(app):
    client, _ = app
    outcome = client.device_result(good_payload())
    assert outcome.get("success") is True, outcome
