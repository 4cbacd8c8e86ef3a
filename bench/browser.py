"""The browser backend against native LiteRT: the same int8 file, in headless Chromium and here.

    python -m bench.browser [--rounds 12] [--calls 5]

Starts the app (COOP/COEP, LiteRT.js from web/node_modules), opens it in Debian's chromium and
times LiteRT.js on the browser variant of every shipped model, WASM on 1 thread and on all
threads, next to native LiteRT on the same file and thread counts. The four runners take turns
in a new random order each round (`calls` timed calls per turn); the browser times its own calls
with performance.now(), so no page round trip is counted. Then the live camera (a fake device):
frames per second and the mean per-phase profile of a frame for every shipped model, and how far
the live preview's class masks are from the exact path's on every shipped example. Writes
bench/results/browser.{json,md}.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.app_latency import server
from bench.results_file import machine, write_results
from unet.runtime.backends import LiteRTBackend
from unet.runtime.imageio import image_files, read_image
from unet.runtime.metadata import load_metadata, model_metadata_files
from unet.runtime.preprocess import preprocess
from unet.runtime.variants import BROWSER_VARIANT, variant_path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TARGET_RATIO = 2.0
PUT_TENSOR = """(b64) => {
  window.benchTensor = new Float32Array(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
}"""
TIME_CALLS = """async ([model, variant, threads, calls]) => {
  const result = await window.unetEdge.runTensor(window.benchTensor, {model, variant, threads, runs: calls});
  return {latencies: result.latenciesMs, backend: result.backend, threads: result.threads};
}"""
# Where a browser call's time goes: copying the tensor in, the model, copying the output out.
PHASES = """async ([model, variant, threads, calls]) => {
  const {segmenterFor} = await import('/unet-edge/web/unet-edge.js');
  const {backend} = await segmenterFor(model, {variant, threads});
  const phases = {tensor_in_ms: [], model_ms: [], tensor_out_ms: []};
  for (let i = 0; i < calls; i++) {
    let start = performance.now();
    const input = new backend.litert.Tensor(window.benchTensor, backend.inputShape);
    phases.tensor_in_ms.push(performance.now() - start);
    start = performance.now();
    const outputs = await backend.model.run(input);
    phases.model_ms.push(performance.now() - start);
    start = performance.now();
    const onCpu = await outputs[0].moveTo('wasm');
    onCpu.toTypedArray();
    phases.tensor_out_ms.push(performance.now() - start);
    input.delete();
    onCpu.delete();
  }
  const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
  return Object.fromEntries(Object.entries(phases).map(([name, values]) => [name, median(values)]));
}"""
VARIANTS = (BROWSER_VARIANT, "float32")


def wait_for_app(url: str, process) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"{url}unet-edge/config.json", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the app did not start within 120 s")


def native_calls(backend: LiteRTBackend, tensor: np.ndarray, calls: int) -> list[float]:
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        backend.run(tensor)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def bench_model(page, metadata_path: Path, rounds: int, calls: int, threads: int) -> dict:
    metadata = load_metadata(metadata_path)
    name = metadata.name
    example = next(path for path in image_files(REPO / "assets" / "examples")
                   if path.name.startswith(f"{name}-"))
    tensor, _ = preprocess(read_image(example), metadata)
    page.evaluate(PUT_TENSOR, base64.b64encode(tensor.tobytes()).decode())
    runners, labels = {}, {}
    for variant in VARIANTS:
        for count in (1, threads):
            native = LiteRTBackend(variant_path(metadata_path, variant), num_threads=count)
            runners[f"{variant}-native-{count}"] = lambda native=native: native_calls(native, tensor, calls)
            first = page.evaluate(TIME_CALLS, [name, variant, count, 1])
            labels[f"{variant}-browser-{count}"] = first["backend"]
            runners[f"{variant}-browser-{count}"] = lambda variant=variant, count=count: page.evaluate(
                TIME_CALLS, [name, variant, count, calls])["latencies"]
    for run in runners.values():
        run()
    samples = {key: [] for key in runners}
    order = np.random.default_rng(0)
    for _ in range(rounds):
        for index in order.permutation(len(runners)):
            key = list(runners)[index]
            samples[key] += runners[key]()
    p50 = {key: float(np.percentile(values, 50)) for key, values in samples.items()}
    row = {"model": name, "file": variant_path(metadata_path, BROWSER_VARIANT).name,
           "input": [*metadata.input_size, metadata.channels], "p50_ms": p50,
           "samples": {key: len(values) for key, values in samples.items()}, "labels": labels,
           "browser_phases_ms": page.evaluate(PHASES, [name, BROWSER_VARIANT, threads, 20])}
    row["ratio"] = {f"{variant}-{count}": p50[f"{variant}-browser-{count}"] / p50[f"{variant}-native-{count}"]
                    for variant in VARIANTS for count in (1, threads)}
    return row


LIVE_FRAMES = 60
LIVE_PREVIEW = """async ([b64, model]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return window.unetEdge.livePreview(new Blob([bytes]), {model});
}"""


def live_camera(page, name: str) -> dict:
    """The panel's live mode on the fake camera for one model: frames per second and mean phases."""
    import json

    page.locator("#model input").first.click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function(f"document.querySelector('#model input').value === {name!r}", timeout=30_000)
    page.evaluate("delete document.querySelector('.device-rate').dataset.frames")
    page.locator(".device-camera").check()
    frames = "Number(document.querySelector('.device-rate').dataset.frames || 0)"
    page.wait_for_function(f"{frames} >= {LIVE_FRAMES}", timeout=300_000)
    rate = page.locator(".device-rate")
    result = {"model": name, "fps": float(rate.get_attribute("data-fps")),
              "frames": int(rate.get_attribute("data-frames")),
              "phases_ms": json.loads(rate.get_attribute("data-phases"))}
    page.locator(".device-camera").uncheck()
    page.wait_for_timeout(500)
    return result


def live_preview_agreement(page) -> list[dict]:
    rows = []
    for metadata_path in model_metadata_files(REPO / "assets"):
        name = load_metadata(metadata_path).name
        for example in image_files(REPO / "assets" / "examples"):
            if example.name.startswith(f"{name}-"):
                result = page.evaluate(LIVE_PREVIEW, [base64.b64encode(example.read_bytes()).decode(), name])
                rows.append({"model": name, "image": example.name, "agreement": result["agreement"]})
    return rows


def markdown(results: dict) -> str:
    threads = results["threads"]
    lines = ["# In-browser LiteRT.js against native LiteRT, the same .tflite files", "",
             f"Machine: {results['machine']}. Browser: {results['browser']}, WASM. "
             f"{results['rounds']} interleaved rounds of {results['calls']} calls per runner; "
             "the browser times its own calls. p50 per model call.", "",
             "| model | input | file | threads | native | browser | browser / native |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in results["models"]:
        p50 = row["p50_ms"]
        for variant in VARIANTS:
            for count in (1, threads):
                key = f"{variant}-{count}"
                lines.append(f"| {row['model']} | {'x'.join(map(str, row['input']))} | {variant} | {count} | "
                             f"{p50[f'{variant}-native-{count}']:.2f} ms | "
                             f"{p50[f'{variant}-browser-{count}']:.2f} ms | "
                             f"{row['ratio'][key]:.2f}x |")
    target = [row["ratio"][f"{BROWSER_VARIANT}-{threads}"] for row in results["models"]]
    lines += ["", f"int8 with {threads} threads: browser/native {min(target):.2f}x to {max(target):.2f}x; "
              "target within "
              f"{TARGET_RATIO:.0f}x: {'met' if max(target) <= TARGET_RATIO else 'missed'}.", "",
              f"Where a browser int8 call's time goes ({threads} threads, median of 20):", "",
              "| model | tensor in | model | tensor out |", "|---|---:|---:|---:|"]
    for row in results["models"]:
        phases = row["browser_phases_ms"]
        lines.append(f"| {row['model']} | {phases['tensor_in_ms']:.2f} ms | {phases['model_ms']:.2f} ms | "
                     f"{phases['tensor_out_ms']:.2f} ms |")
    lines += ["", f"Live camera (fake device, 640x480), {LIVE_FRAMES} frames after the first; mean "
              "milliseconds per phase of a frame; targets 25 FPS for semantic models, 15 for nuclei, and "
              "no more time outside the model call than in it:", "",
              "| model | FPS | grab | normalise | model | postprocess | instances | draw | frame "
              "| outside / model |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["live"]:
        phases = row["phases_ms"]
        outside = phases["frame"] - phases["model"]
        lines.append(f"| {row['model']} | {row['fps']:.1f} | " + " | ".join(
            f"{phases[key]:.1f}" for key in ("grab", "normalise", "model", "postprocess", "instances", "draw",
                                            "frame")) + f" | {outside / phases['model']:.2f} |")
    lines += ["", "The live preview against the exact path (class masks, pixel agreement at the image's "
              "size):", "", "| model | image | agreement |", "|---|---|---:|"]
    lines += [f"| {row['model']} | {row['image']} | {row['agreement']:.2%} |"
              for row in results["live_preview"]]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "browser.json")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as workdir, \
            server([str(REPO / "app.py")], Path(workdir) / "app.log") as (url, process):
        wait_for_app(url, process)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
            page = browser.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_function("window.unetEdge !== undefined && window.crossOriginIsolated",
                                   timeout=60_000)
            rows = [bench_model(page, path, args.rounds, args.calls, threads)
                    for path in model_metadata_files(REPO / "assets")]
            preview = live_preview_agreement(page)
            with_camera = browser.new_context(permissions=["camera"],
                                              viewport={"width": 1400, "height": 2400})
            live_page = with_camera.new_page()
            live_page.goto(url, wait_until="load")
            live_page.wait_for_function("window.unetEdge !== undefined && window.crossOriginIsolated",
                                        timeout=60_000)
            live = [live_camera(live_page, load_metadata(path).name)
                    for path in model_metadata_files(REPO / "assets")]
            version = browser.version
            browser.close()
    results = {"machine": machine(), "browser": f"Chromium {version} (headless)", "threads": threads,
               "rounds": args.rounds, "calls": args.calls, "models": rows, "live": live,
               "live_preview": preview}
    write_results(args.out, results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
