"""The app as a user meets it: launch to first answer, /segment round trip, concurrent throughput.

    python bench/app_latency.py [--calls 30] [--out bench/results/app.json]

Starts `app.py` on a free local port with the shipped models, then through gradio_client:
the time from launch to the first answered /segment call; the round-trip p50/p95 for a
512x512 image next to the model time the server reports for the two backends; and requests
per second with 1, 4 and 8 concurrent clients for a bounded number of calls, with errors.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from unet.atomic import atomic_write_text  # noqa: E402
from unet.runtime import percentiles_ms  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_answer(url: str, image: Path, process: subprocess.Popen, timeout: float = 180):
    """Poll until /segment answers; returns the client."""
    from gradio_client import Client, handle_file

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError("the app exited during start-up")
        try:
            client = Client(url, verbose=False)
            client.predict(handle_file(str(image)), api_name="/segment", timed_runs=1)
            return client
        except Exception:
            time.sleep(0.2)
    raise TimeoutError(f"no answer from {url} within {timeout} s")


def one_call(url: str, image: Path, model: str, download_folder: Path) -> bool:
    """One /segment call from a fresh client with its own download folder; False on any error."""
    from gradio_client import Client, handle_file

    try:
        Client(url, verbose=False, download_files=download_folder).predict(
            handle_file(str(image)), model_name=model, api_name="/segment", timed_runs=1)
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="round trips, and calls per concurrency level")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "app.json")
    args = parser.parse_args(argv)
    from gradio_client import handle_file

    workdir = Path(tempfile.mkdtemp())
    example = sorted((REPO / "assets" / "examples").glob(f"{args.model}-*.png"))[0]
    image = workdir / "512.png"
    Image.open(example).convert("L").resize((512, 512), Image.Resampling.BILINEAR).save(image)
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = (workdir / "app.log").open("w")
    launched = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        client = first_answer(url, image, process)
        launch_s = time.perf_counter() - launched
        print(f"launch to first answer: {launch_s:.1f} s")
        round_trips, model_ms = [], []
        for _ in range(args.calls):
            started = time.perf_counter()
            summary = client.predict(handle_file(str(image)), model_name=args.model, api_name="/segment",
                                     timed_runs=1)[-1]
            round_trips.append((time.perf_counter() - started) * 1000.0)
            model_ms.append(sum(backend["p50_ms"] for backend in summary["backends"]))
        round_trip = percentiles_ms(round_trips)
        both_models = float(np.median(model_ms))
        print(f"512x512 round trip p50 {round_trip['p50_ms']:.0f} ms p95 {round_trip['p95_ms']:.0f} ms; "
              f"the two backends' model time {both_models:.0f} ms")
        throughput = {}
        for clients in (1, 4, 8):
            folders = [workdir / f"downloads-{clients}-{i}" for i in range(args.calls)]
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                outcomes = list(pool.map(partial(one_call, url, image, args.model), folders))
            elapsed = time.perf_counter() - started
            throughput[str(clients)] = {"calls": len(outcomes), "errors": outcomes.count(False),
                                        "requests_per_s": round(len(outcomes) / elapsed, 2)}
            print(f"{clients} concurrent clients: {throughput[str(clients)]}")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    results = {
        "model": args.model, "image": "512x512", "launch_to_first_answer_s": round(launch_s, 2),
        "round_trip_ms": round_trip, "two_backends_model_ms_p50": round(both_models, 2),
        "overhead_beyond_models_ms_p50": round(round_trip["p50_ms"] - both_models, 2),
        "throughput": throughput,
    }
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
