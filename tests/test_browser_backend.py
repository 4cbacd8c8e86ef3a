"""The on-device backend (web/, LiteRT.js) in Debian's chromium, against the server's LiteRT.

Same tensor in, same bytes out; every shipped example end to end from its file; the app's
on-device row, with no request carrying the image; the live camera on a fake device.
"""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from served_app import launched_app

from unet.runtime.imageio import image_files
from unet.runtime.metadata import load_metadata, model_metadata_files
from unet.runtime.preprocess import preprocess
from unet.runtime.segmenter import Segmenter
from unet.runtime.variants import BROWSER_VARIANT, variant_path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
CHROMIUM = Path("/usr/bin/chromium")
LITERT_JS = REPO / "web" / "node_modules" / "@litertjs" / "core"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)"),
    pytest.mark.skipif(not LITERT_JS.is_dir(), reason="LiteRT.js is not installed (make test runs npm ci in web/)"),
]
MODELS = {load_metadata(path).name: path for path in model_metadata_files(ASSETS)}


def examples() -> list[tuple[str, Path]]:
    return [(next(name for name in MODELS if path.name.startswith(f"{name}-")), path)
            for path in image_files(ASSETS / "examples")]


@pytest.fixture(scope="module")
def shipped_app(tmp_path_factory):
    with launched_app(tmp_path_factory.mktemp("app-log") / "app.log") as running:
        yield running


@pytest.fixture(scope="module")
def browser(shipped_app):
    """Closed before the app stops: an open event stream would hold the server's shutdown."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, shipped_app):
    url, _, _ = shipped_app
    context = browser.new_context(viewport={"width": 1400, "height": 2400}, permissions=["camera"])
    opened = context.new_page()
    opened.goto(url, wait_until="load")
    opened.wait_for_function("window.unetEdge !== undefined && window.crossOriginIsolated", timeout=60_000)
    yield opened
    context.close()


# Base64 both ways, in chunks: a spread of a whole image overflows the call stack.
B64 = """const toBytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const toB64 = (bytes) => {
  let text = '';
  for (let i = 0; i < bytes.length; i += 32768) text += String.fromCharCode(...bytes.subarray(i, i + 32768));
  return btoa(text);
};"""
SEGMENT_FILE = """async ([b64, model, flips]) => {
  """ + B64 + """
  const bytes = toBytes(b64);
  const result = await window.unetEdge.segment(new Blob([bytes]), {model, runs: 1, flips});
  return {...result, mask: toB64(result.mask), instanceLabels: null};
}"""
RUN_TENSOR = """async ([b64, model, variant]) => {
  """ + B64 + """
  const bytes = toBytes(b64);
  const {output} = await window.unetEdge.runTensor(new Float32Array(bytes.buffer), {model, variant});
  return toB64(new Uint8Array(output.buffer));
}"""


@pytest.mark.parametrize("variant, tolerance", [(BROWSER_VARIANT, 0.0), ("float32", 1e-5)])
def test_same_tensor_in_same_output_out(page, variant, tolerance):
    for name, example in examples():
        metadata_path = MODELS[name]
        native = Segmenter.from_path(variant_path(metadata_path, variant))
        tensor, _ = preprocess(load_image(example), native.metadata)
        expected = native.run_tensor(tensor)
        encoded = page.evaluate(RUN_TENSOR, [base64.b64encode(tensor.tobytes()).decode(), name, variant])
        output = np.frombuffer(base64.b64decode(encoded), dtype=np.float32).reshape(expected.shape)
        worst = float(np.abs(output - expected).max())
        print(f"{example.name} {variant}: largest difference {worst:.2e}")
        if tolerance == 0.0:
            assert output.tobytes() == expected.tobytes(), f"{example.name}: {worst}"
        assert worst <= tolerance


def load_image(path: Path) -> np.ndarray:
    from unet.runtime.imageio import read_image

    return read_image(path)


@pytest.mark.parametrize("flips", [False, True])
def test_every_example_from_its_file_agrees_with_the_servers_int8(page, flips):
    for name, example in examples():
        server = Segmenter.from_path(variant_path(MODELS[name], "int8")).segment(
            str(example), flips=flips).segmentation
        result = page.evaluate(SEGMENT_FILE, [base64.b64encode(example.read_bytes()).decode(), name, flips])
        mask = np.frombuffer(base64.b64decode(result["mask"]), np.uint8).reshape(result["height"], result["width"])
        agreement = float((mask == server.class_mask).mean())
        print(f"{example.name}{' with flips' if flips else ''}: {agreement:.4%} of pixels agree; instances {result['instances']} "
              f"(server {server.instance_count}); {result['backend']}, p50 {result['p50_ms']:.1f} ms")
        assert agreement >= 0.995
        if server.instance_count is not None:
            assert abs(result["instances"] - server.instance_count) <= 0.03 * server.instance_count
        assert result["backend"].startswith("LiteRT.js int8 (WASM") and result["threads"] >= 1


def test_app_shows_the_device_row_and_sends_no_image_bytes(page):
    example = next(path for name, path in examples() if name == "nuclei")
    image_bytes = example.read_bytes()
    page.get_by_text(example.stem).first.click()
    page.get_by_role("button", name="Segment", exact=True).click()
    page.get_by_text("Agreement:").wait_for(timeout=90_000)
    requests = []
    page.on("request", lambda request: requests.append(request))
    page.locator(".device-run").click()
    page.locator("#device-notes").get_by_text("pixels agree").wait_for(timeout=90_000)
    table = page.locator("#latency-table").inner_text()
    assert "this device: LiteRT.js int8 (WASM" in table, table
    assert "LiteRT int8" in table, table
    page.locator("#overlay-device img").wait_for(state="visible", timeout=30_000)
    page.locator("#disagreement-device img").wait_for(state="visible", timeout=30_000)
    encoded = base64.b64encode(image_bytes)
    for request in requests:
        body = request.post_data_buffer or b""
        assert image_bytes not in body and encoded not in body, f"{request.url} carried the image"
        assert "/upload" not in request.url, f"the on-device run uploaded something: {request.url}"
    notes = page.locator("#device-notes").inner_text()
    agreed = float(notes.split("% of pixels agree")[0].split()[-1])
    assert agreed >= 99.5, notes


def choose_model(page, name: str) -> None:
    page.locator("#model input").first.click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function(f"document.querySelector('#model input').value === {name!r}", timeout=30_000)


LIVE_FLOOR_FPS = 10


@pytest.mark.parametrize("name", sorted(MODELS))
def test_live_camera_runs_at_camera_speed_with_no_more_time_outside_the_model_than_in_it(page, name):
    """At least 10 frames a second, unless the model call alone forbids it on this machine.

    LiteRT.js's int8 call is the floor of a frame: here (AMD EPYC, AVX-512 VNNI) the nuclei model
    takes 61-67 ms in WebAssembly against 9 ms natively, so 10 FPS is out of reach whatever the
    page does; the floor is then 70% of what that call allows. `make bench` (bench.browser)
    reports the rates and the phases.
    """
    choose_model(page, name)
    page.locator(".device-camera").check()
    page.wait_for_function("Number(document.querySelector('.device-rate').dataset.frames || 0) >= 40",
                           timeout=120_000)
    rate = page.locator(".device-rate")
    fps = float(rate.get_attribute("data-fps"))
    phases = json.loads(rate.get_attribute("data-phases"))
    text = rate.inner_text()
    page.locator(".device-camera").uncheck()
    print(f"{name}: {text}; mean phases {phases}")
    assert "FPS" in text and "model" in text and "draw" in text
    assert set(phases) == {"grab", "normalise", "model", "postprocess", "instances", "draw", "frame"}
    assert phases["frame"] - phases["model"] <= phases["model"]
    assert fps >= min(LIVE_FLOOR_FPS, 0.7 * 1000 / phases["model"])


LIVE_PREVIEW = """async ([b64, model]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return window.unetEdge.livePreview(new Blob([bytes]), {model});
}"""


def test_the_live_preview_agrees_with_the_exact_path_on_every_example(page):
    """The preview normalises the model-sized frame and keeps model-sized masks; how far that is
    from the exact path is the README's table (bench.browser measures it the same way)."""
    for name, example in examples():
        result = page.evaluate(LIVE_PREVIEW, [base64.b64encode(example.read_bytes()).decode(), name])
        print(f"{example.name}: live preview agrees with the exact path on {result['agreement']:.2%}")
        assert result["agreement"] >= 0.9


def test_switching_models_shows_only_the_controls_that_apply(page):
    """Scale options for the instance model only; the threshold for none of the shipped models,
    which all have two or more output channels (test_app checks a binary one shows it)."""
    for name, scale_shown in (("brain-tissue", False), ("nuclei", True), ("shapes", False), ("nuclei", True)):
        choose_model(page, name)
        for elem_id in ("object-diameter", "auto-scale"):
            page.locator(f"#{elem_id}").wait_for(state="visible" if scale_shown else "hidden", timeout=30_000)
        assert not page.locator("#threshold").is_visible(), name
