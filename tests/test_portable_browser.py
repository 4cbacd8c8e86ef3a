"""The portable file in the browser, through MediaPipe's own web segmenter (@mediapipe/tasks-vision).

A page on loopback loads tasks-vision and its WASM from web/node_modules, as an app developer's
page would from their own bundle, and segments one example per shipped model given at the
model's input size. Its category mask must agree with the project's int8 mask (Python, LiteRT).
"""

import base64
import functools
import http.server
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from bench.portable import at_input_size, class_mask_from_mediapipe, examples_of
from unet.runtime.backends import LiteRTBackend
from unet.runtime.imageio import read_image
from unet.runtime.metadata import load_metadata, model_metadata_files
from unet.runtime.segmenter import Segmenter
from unet.runtime.variants import PORTABLE_VARIANT, variant_path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
TASKS_VISION = REPO / "web" / "node_modules" / "@mediapipe" / "tasks-vision"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)"),
    pytest.mark.skipif(not TASKS_VISION.is_dir(), reason="tasks-vision is not installed (make test runs npm ci in web/)"),
]
MODELS = {path.parent.name: path for path in model_metadata_files(REPO / "assets")}
PAGE = b"<!doctype html><title>portable model in MediaPipe</title>"


class RepoFiles(http.server.SimpleHTTPRequestHandler):
    """The repository's files on loopback, a blank page at /, and .wasm as application/wasm."""

    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                                                ".wasm": "application/wasm", ".mjs": "text/javascript"}

    def do_GET(self):
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(RepoFiles, directory=str(REPO))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        opened = browser.new_page()
        opened.goto(server + "/", wait_until="load")
        yield opened
        browser.close()


SEGMENT = """async ([b64, modelUrl, width, height]) => {
  const {FilesetResolver, ImageSegmenter} =
      await import('/web/node_modules/@mediapipe/tasks-vision/vision_bundle.mjs');
  const fileset = await FilesetResolver.forVisionTasks('/web/node_modules/@mediapipe/tasks-vision/wasm');
  const segmenter = await ImageSegmenter.createFromOptions(fileset, {
    baseOptions: {modelAssetPath: modelUrl, delegate: 'CPU'},
    runningMode: 'IMAGE', outputCategoryMask: true, outputConfidenceMasks: false,
  });
  const rgb = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[4 * i] = rgb[3 * i]; rgba[4 * i + 1] = rgb[3 * i + 1]; rgba[4 * i + 2] = rgb[3 * i + 2];
    rgba[4 * i + 3] = 255;
  }
  const result = segmenter.segment(new ImageData(rgba, width, height));
  const mask = Array.from(result.categoryMask.getAsUint8Array());
  const labels = segmenter.getLabels();
  result.close();
  segmenter.close();
  return {mask, labels};
}"""


@pytest.mark.parametrize("name", sorted(MODELS))
def test_mediapipe_web_segmenter_agrees_with_the_project_int8_mask(page, name):
    metadata = load_metadata(MODELS[name])
    small = at_input_size(read_image(examples_of(metadata)[0]), metadata)
    height, width = small.shape[:2]
    portable = variant_path(MODELS[name], PORTABLE_VARIANT).relative_to(REPO)
    result = page.evaluate(SEGMENT, [base64.b64encode(small.tobytes()).decode(), f"/{portable}", width, height])
    category = np.asarray(result["mask"], dtype=np.uint8).reshape(height, width)
    int8 = Segmenter(LiteRTBackend(variant_path(MODELS[name], "int8")), metadata)
    agreement = np.mean(class_mask_from_mediapipe(category, metadata) == int8.segment(small).segmentation.class_mask)
    print(f"{name}: tasks-vision in chromium agrees with the project's int8 mask on {agreement:.4%}; "
          f"labels {result['labels']}")
    assert result["labels"] == metadata.class_names[-metadata.output_channels:]
    assert agreement >= 0.99
