"""unet-edge demo: upload an image, see the masks of two backends side by side.

    python app.py                     # http://127.0.0.1:7860 (GRADIO_SERVER_NAME=0.0.0.0 in Docker)

The UI only: every computation lives in `unet.runtime.compare`; `Handlers` are plain methods
that can be called and tested without a server, and `build_demo(catalog)` wires them to the page.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from unet.runtime import errors
from unet.runtime.browser import (
    CrossOriginIsolation,
    add_browser_routes,
    device_segmentation,
    module_sources,
)
from unet.runtime.compare import Comparison, ModelCatalog, compare, compare_device
from unet.runtime.imageio import ImageReadError, image_files, image_size, read_image
from unet.runtime.overlay import mask_image, save_instance_labels, save_png
from unet.runtime.scale import AUTO_SCALE_TOLERANCE_TEXT

ASSETS = Path(os.environ.get("UNET_ASSETS", Path(__file__).resolve().parent / "assets"))
WEB = Path(__file__).resolve().parent / "web"
MAX_PIXELS = 4_000_000
MAX_UPLOAD = "40mb"
DOWNLOADS = Path(tempfile.gettempdir()) / "unet-edge-downloads"
DOWNLOAD_LIFETIME_S = 600
PRUNE_INTERVAL_S = 60


class UserError(gr.Error):
    """A message for the user about their input: shown in the UI, no server-side traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)


def applicable_controls(metadata) -> tuple[bool, bool]:
    """(threshold applies, scale options apply) for a model."""
    return metadata.output_channels == 1, metadata.mode == "instance"


MAX_TIMED_RUNS = 100
MAX_DIAMETER_PX = 10_000


def checked_number(value: object, name: str, low: float, high: float) -> float:
    """A number from a request (the page or any client), refused in one line unless finite and in range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise UserError(f"{name} must be a number from {low:g} to {high:g}, got {str(value)[:40]!r}")
    return float(value)


@dataclass
class SegmentView:
    """What one /segment call shows; the page's outputs follow these fields in order."""

    overlay_a: str
    overlay_b: str
    slider: tuple[str, str]
    disagreement: str
    table: gr.Dataframe
    notes: str
    masks: list[str]
    summary: dict
    server_rows: list

    def values(self) -> list:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclass
class DeviceView:
    """What one on-device result shows; the page's outputs follow these fields in order."""

    overlay: str
    disagreement: str
    table: gr.Dataframe
    notes: str
    summary: dict

    def values(self) -> list:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclass
class ResultFiles:
    overlays: list[str]
    disagreement: str
    masks: list[str]


def image_upload(**kwargs) -> gr.Image:
    """A gr.Image input that hands the uploaded file itself to the handler.

    gr.Image decodes uploads with Pillow first; a file Pillow cannot open would fail there
    with a generic message. Here that file reaches `load_upload`, whose decoder reads TIFF
    with tifffile and names what is wrong with anything it cannot read. (Set on the instance:
    subclassing a gradio component makes gradio write a .pyi stub beside this file.)
    """
    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    pillow_preprocess = component.preprocess

    def preprocess(payload):
        try:
            return pillow_preprocess(payload)
        except (OSError, ValueError, SyntaxError):
            if payload is not None and payload.path:
                return str(payload.path)
            raise

    component.preprocess = preprocess
    return component


class Handlers:
    """The app's work on one catalog of models: decode the upload, compare, write result files."""

    def __init__(
        self, catalog: ModelCatalog, downloads: Path = DOWNLOADS, max_pixels: int = MAX_PIXELS
    ) -> None:
        self.catalog = catalog
        self.downloads = Path(downloads)
        self.max_pixels = max_pixels
        self._last_pruned = 0.0
        self._png_writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="png")

    def model(self, model_name: str):
        try:
            return self.catalog.model(model_name)
        except errors.UserError as error:
            raise UserError(str(error)) from error

    def load_upload(self, path: str | None) -> tuple[np.ndarray, list[str]]:
        """Decode an upload with the project's decoder; bound its size with a visible note."""
        if not path:
            raise UserError("No image: upload one, paste one, or pick an example.")
        try:
            image = read_image(path, max_pixels=self.max_pixels)
            height, width = image_size(path)
        except ImageReadError as error:
            # The upload's name, not the server's cache path, is what the user knows it by.
            message = str(error).replace(str(path), Path(path).name)
            raise UserError(f"Cannot read this file: {message}") from error
        notes = []
        if image.shape[0] * image.shape[1] < height * width:
            notes.append(f"The image ({width}x{height}) was downscaled to "
                         f"{image.shape[1]}x{image.shape[0]} to bound memory and time.")
        return image, notes

    def request_folder(self) -> Path:
        """A private folder for one request's files; about once a minute, old folders are removed."""
        self.downloads.mkdir(parents=True, exist_ok=True)
        now = time.time()
        # Pruning stats every folder; on each request that cost grows with the request rate.
        if now - self._last_pruned >= PRUNE_INTERVAL_S:
            self._last_pruned = now
            for old in self.downloads.iterdir():
                if old.is_dir() and old.stat().st_mtime < now - DOWNLOAD_LIFETIME_S:
                    shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.downloads))

    def compare(
        self, image: np.ndarray, model_name: str, backends: tuple[str, str], threshold: float | None,
        opacity: float, timed_runs: int, object_diameter: float | None = None, auto_scale: bool = False,
    ) -> Comparison:
        try:
            return compare(self.catalog, image, model_name, backends, threshold, opacity, timed_runs,
                           object_diameter, auto_scale)
        except errors.UserError as error:
            raise UserError(str(error)) from error

    def write_result_files(self, comparison: Comparison, model_name: str) -> ResultFiles:
        """Overlay PNGs, the disagreement PNG and mask PNGs of both backends, in a request folder.

        Handing gradio files rather than arrays matters under load: gradio caches an array output
        by rewriting a file named after its content hash, so two requests with the same result
        could stream a file that the other is rewriting; files are copied into its cache atomically.
        Pillow releases the GIL while it compresses, so the five files are encoded two at a time.
        """
        folder = self.request_folder()
        colours = self.catalog.model(model_name).metadata.class_colours
        writes = {}
        for result in comparison.results:
            slug = result.backend.lower().replace(" ", "-").replace(",", "")
            overlay_path = folder / f"{model_name}-{slug}-overlay.png"
            writes[f"overlay {slug}"] = (save_png, result.overlay, overlay_path)
            segmentation = result.segmentation
            if segmentation.instance_labels is not None:
                path = folder / f"{model_name}-{slug}-instances.png"
                writes[f"mask {slug}"] = (save_instance_labels, segmentation.instance_labels, path)
            else:
                path = folder / f"{model_name}-{slug}-mask.png"
                writes[f"mask {slug}"] = (save_png, mask_image(segmentation.class_mask, colours), path)
        disagreement_path = folder / f"{model_name}-disagreement.png"
        writes["disagreement"] = (save_png, comparison.disagreement, disagreement_path)
        futures = {name: self._png_writers.submit(*job) for name, job in writes.items()}
        written = {name: str(future.result()) for name, future in futures.items()}
        return ResultFiles([written[name] for name in writes if name.startswith("overlay ")],
                           written["disagreement"],
                           [written[name] for name in writes if name.startswith("mask ")])

    def segment(
        self,
        image_path: str | None,
        model_name: str | None = None,
        backend_a: str | None = None,
        backend_b: str | None = None,
        threshold: float = 0.5,
        opacity: float = 0.5,
        timed_runs: int = 10,
        object_diameter: float = 0,
        auto_scale: bool = False,
    ) -> SegmentView:
        """The main event (api_name="segment"): overlays, slider, disagreement, table, files, JSON.

        object_diameter: the objects' diameter in pixels (0: use the image as it is); the image is
        rescaled so they match the model's trained diameter. auto_scale: estimate it instead.
        """
        model_name = model_name or next(iter(self.catalog.models))
        model = self.model(model_name)
        threshold = checked_number(threshold, "threshold", 0.0, 1.0)
        opacity = checked_number(opacity, "opacity", 0.0, 1.0)
        timed_runs = checked_number(timed_runs, "timed_runs", 1, MAX_TIMED_RUNS)
        object_diameter = checked_number(object_diameter or 0, "object_diameter", 0, MAX_DIAMETER_PX)
        defaults = model.default_pair()
        chosen = (backend_a or defaults[0], backend_b or defaults[1])
        image, notes = self.load_upload(image_path)
        metadata = model.metadata
        binary_threshold = threshold if metadata.output_channels == 1 else None
        if object_diameter and auto_scale:
            raise UserError("Give an object diameter or tick auto-scale, not both.")
        comparison = self.compare(image, model_name, chosen, binary_threshold, opacity, int(timed_runs),
                                  float(object_diameter) if object_diameter else None, bool(auto_scale))
        agreement = comparison.agreement
        headers = ["backend", "p50 ms", "p95 ms", "file size"]
        if metadata.mode == "instance":
            headers.append("instances")
        note_lines = [*notes,
                      f"Agreement: {100 * agreement['pixel_agreement']:.2f}% of pixels, "
                      f"mean IoU {agreement['mean_iou']:.4f}"
                      + (f", matched-instance F1 {agreement['matched_instance_f1']:.4f}"
                         if "matched_instance_f1" in agreement else "") + ".",
                      "Latency is the model call only, on this server's CPU: not Raspberry Pi latency "
                      "(the README's \"Raspberry Pi\" section says how to measure on a Pi).",
                      *scale_notes(comparison.summary["scale"], metadata)]
        comparison.summary["notes"] = notes
        files = self.write_result_files(comparison, model_name)
        return SegmentView(
            overlay_a=files.overlays[0],
            overlay_b=files.overlays[1],
            slider=(files.overlays[0], files.overlays[1]),
            disagreement=files.disagreement,
            table=gr.Dataframe(value=comparison.table(), headers=headers),
            notes="\n\n".join(note_lines),
            masks=files.masks,
            summary=comparison.summary,
            server_rows=comparison.table(),
        )

    def device_result(
        self, image_path: str | None, model_name: str, reference_backend: str, threshold: float,
        opacity: float, server_rows: list | None, payload: dict,
    ) -> DeviceView:
        """The visitor's on-device run (api_name="device_result"): its overlay, its disagreement with
        backend A, and its row under the server's rows in the latency table.

        payload: what web/unet-edge.js sends: masks as PNG data URLs, timings, what ran it.
        """
        model = self.model(model_name)
        threshold = checked_number(threshold, "threshold", 0.0, 1.0)
        opacity = checked_number(opacity, "opacity", 0.0, 1.0)
        image, _ = self.load_upload(image_path)
        try:
            device = device_segmentation(payload, image.shape[:2], model.metadata.num_classes)
            if payload.get("model") not in (None, model_name):
                raise UserError(f"The device ran {payload['model']!r} but {model_name!r} is selected; "
                                "run it again.")
            binary_threshold = threshold if model.metadata.output_channels == 1 else None
            result = compare_device(self.catalog, image, model_name, reference_backend, device,
                                    binary_threshold, opacity)
        except errors.UserError as error:
            raise UserError(str(error)) from error
        folder = self.request_folder()
        overlay = save_png(result.overlay, folder / f"{model_name}-this-device-overlay.png")
        disagreement = save_png(result.disagreement, folder / f"{model_name}-this-device-disagreement.png")
        rows = [row for row in (server_rows or []) if not str(row[0]).startswith("this device")]
        headers = ["backend", "p50 ms", "p95 ms", "file size"]
        headers += ["instances"] if model.metadata.mode == "instance" else []
        agreed = result.agreement
        note = (f"{device.backend} against {reference_backend} (resized to the model input on both): "
                f"{100 * agreed['pixel_agreement']:.2f}% of pixels agree, mean IoU {agreed['mean_iou']:.4f}"
                + (f", matched-instance F1 {agreed['matched_instance_f1']:.4f}"
                   if "matched_instance_f1" in agreed else "")
                + ". Latency measured by the browser on this device; the image was not sent for it.")
        return DeviceView(str(overlay), str(disagreement),
                          gr.Dataframe(value=[*rows, result.row], headers=headers), note, result.summary)

    def update_backends(self, model_name: str) -> tuple:
        """The chosen model's backends and summary, and only the controls that apply to it shown:
        the threshold for one-channel (binary) models, the object diameter and auto-scale for
        instance models. Hidden controls keep their values, so the API's parameters stay as they were."""
        model = self.model(model_name)
        first, second = model.default_pair()
        binary, instance = applicable_controls(model.metadata)
        return (
            gr.Dropdown(choices=model.backends, value=first),
            gr.Dropdown(choices=model.backends, value=second),
            self.describe(model_name),
            gr.Slider(visible=binary),
            gr.Number(visible=instance),
            gr.Checkbox(visible=instance),
        )

    def describe(self, model_name: str) -> str:
        """The model's one-line summary and a legend of its class colours."""
        model = self.model(model_name)
        metadata = model.metadata
        if metadata.mode == "instance":
            legend = "each object in its own colour, outlined in white"
        else:
            legend = " ".join(
                f'<span style="color: rgb{tuple(colour)}">&#9632;</span> {name}'
                for name, colour in zip(metadata.class_names[1:], metadata.class_colours[1:], strict=True)
            )
        return f"**{model.summary}** Legend: {legend}"

    def example_images(self, examples: Path) -> list[list[str]]:
        """[image, model] pairs: an example named `MODEL-*.png` opens with that model selected."""
        if not examples.is_dir():
            return []
        models = list(self.catalog.models)
        return [[str(path), next((name for name in models if path.name.startswith(f"{name}-")), models[0])]
                for path in image_files(examples)]


def scale_notes(scale: dict, metadata) -> list[str]:
    """A line on the scale the image was segmented at, when the user asked for one."""
    if scale["method"] == "resize":
        return []
    if scale["method"] == "auto" and scale["passes"] == 1:
        found = scale["object_diameter_px"]
        return [f"Auto-scale: objects measure {found:.1f} px in the image; resized to the model's "
                f"input they are within {AUTO_SCALE_TOLERANCE_TEXT} of the trained "
                f"{metadata.object_diameter} px, so one pass was enough." if found else
                "Auto-scale: the first pass found no objects to measure; one pass."]
    return [f"Scale: objects of {scale['object_diameter_px']:.1f} px ({scale['method']}) were "
            f"rescaled x{scale['factor']:.2f} to the trained {metadata.object_diameter} px and "
            "segmented in model-sized windows."]


# The on-device panel: LiteRT.js on the visitor's machine (web/unet-edge.js does the work).
DEVICE_PANEL = """
<div class="device">
  <h3>On this device (LiteRT.js, in your browser)</h3>
  <p class="device-status">Loading the on-device backend...</p>
  <p>
    <button class="device-run lg secondary" type="button">Run on this device</button>
    <label>Private image (segmented here, never uploaded):
      <input class="device-file" type="file" accept="image/*"></label>
    <label><input class="device-camera" type="checkbox"> Live camera (on device)</label>
  </p>
  <p class="device-rate"></p>
  <canvas class="device-overlay"></canvas>
</div>
"""
DEVICE_PANEL_CSS = ".device canvas { max-width: 100%; } .device label { margin-left: 1em; }"
# 'device_result' is the event the panel triggers; gradio finds custom events by their quoted names.
DEVICE_PANEL_JS = """
import('/unet-edge/web/unet-edge.js')
  .then((module) => module.mountPanel(element, (name, data) => trigger(name, data)))
  .catch((error) => {
    element.querySelector('.device-status').textContent = `On-device backend unavailable: ${error}`;
  });
// events: 'device_result'
"""


def build_demo(catalog: ModelCatalog, handlers: Handlers | None = None) -> gr.Blocks:
    """The page for the models in `catalog`; `handlers` defaults to `Handlers(catalog)`."""
    handlers = handlers or Handlers(catalog)
    with gr.Blocks(title="unet-edge", delete_cache=(600, 600)) as demo:
        gr.Markdown("# unet-edge\nU-Net segmentation from Keras to a Raspberry Pi: compare the float "
                    "model with its quantised LiteRT versions on your own image.")
        if not catalog.models:
            gr.Markdown(f"**No models found in `{catalog.root}`.** Run `make models` to build them.")
            return demo
        first_model = next(iter(catalog.models))
        first_a, first_b = catalog.model(first_model).default_pair()
        backends = catalog.model(first_model).backends
        with gr.Row():
            model = gr.Dropdown(list(catalog.models), value=first_model, label="Model", elem_id="model")
            backend_a = gr.Dropdown(backends, value=first_a, label="Backend A")
            backend_b = gr.Dropdown(backends, value=first_b, label="Backend B")
        description = gr.Markdown(handlers.describe(first_model))
        with gr.Row():
            image = image_upload(sources=["upload", "clipboard", "webcam"], label="Image", elem_id="image")
            with gr.Column():
                binary, instance = applicable_controls(catalog.model(first_model).metadata)
                threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Threshold (binary models)",
                                      elem_id="threshold", visible=binary)
                opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                runs = gr.Slider(1, 50, value=10, step=1, label="Timed runs (after one warm-up)",
                                 elem_id="timed-runs")
                with gr.Row():
                    diameter = gr.Number(0, minimum=0, label="Object diameter, px (0: as is)",
                                         elem_id="object-diameter", visible=instance)
                    auto_scale = gr.Checkbox(False, label="Auto-scale (instance models)",
                                             elem_id="auto-scale", visible=instance)
                run = gr.Button("Segment", variant="primary")
        examples = handlers.example_images(catalog.root / "examples")
        if examples:
            gr.Examples(examples, inputs=[image, model],
                        example_labels=[Path(path).stem for path, _ in examples],
                        label="Examples (provenance in assets/examples/SOURCE.md)")
        with gr.Row():
            overlay_a = gr.Image(label="Backend A overlay", format="png", elem_id="overlay-a")
            overlay_b = gr.Image(label="Backend B overlay", format="png", elem_id="overlay-b")
        with gr.Row():
            slider = gr.ImageSlider(label="A | B")
            disagreement = gr.Image(label="Where A and B disagree (magenta)", elem_id="disagreement")
        table = gr.Dataframe(label="Latency and size", interactive=False, elem_id="latency-table")
        notes = gr.Markdown()
        # The import map goes in the page's head before the panel's code runs (gradio's `head=`).
        import_map = json.dumps({"imports": module_sources(WEB)["imports"]})
        device = gr.HTML(html_template=DEVICE_PANEL, css_template=DEVICE_PANEL_CSS,
                         js_on_load=DEVICE_PANEL_JS, elem_id="device-panel",
                         head=f'<script type="importmap" data-unet-edge-importmap>{import_map}</script>')
        with gr.Row():
            device_overlay = gr.Image(label="This device overlay", format="png", elem_id="overlay-device")
            device_disagreement = gr.Image(label="Where A and this device disagree (magenta)",
                                           elem_id="disagreement-device")
        device_notes = gr.Markdown(elem_id="device-notes")
        masks = gr.File(label="Masks (PNG)", file_count="multiple")
        summary = gr.JSON(label="Summary")
        device_summary = gr.JSON(label="On-device summary", visible=False)
        server_rows = gr.State([])
        outputs = {"overlay_a": overlay_a, "overlay_b": overlay_b, "slider": slider,
                   "disagreement": disagreement, "table": table, "notes": notes, "masks": masks,
                   "summary": summary, "server_rows": server_rows}
        assert list(outputs) == [f.name for f in dataclasses.fields(SegmentView)]

        # The API takes its parameter names and defaults from the handler's signature.
        @functools.wraps(handlers.segment)
        def segment(*inputs):
            return handlers.segment(*inputs).values()

        def device_result(image_path, model_name, reference, threshold_value, opacity_value, rows,
                          event: gr.EventData):
            return handlers.device_result(image_path, model_name, reference, threshold_value, opacity_value,
                                          rows, event._data or {}).values()

        device_outputs = [device_overlay, device_disagreement, table, device_notes, device_summary]
        assert len(device_outputs) == len(dataclasses.fields(DeviceView))
        device.device_result(device_result, inputs=[image, model, backend_a, threshold, opacity, server_rows],
                             outputs=device_outputs, api_name=False, concurrency_limit=2)
        model.change(handlers.update_backends, inputs=model,
                     outputs=[backend_a, backend_b, description, threshold, diameter, auto_scale])
        run.click(
            segment,
            inputs=[image, model, backend_a, backend_b, threshold, opacity, runs, diameter, auto_scale],
            outputs=list(outputs.values()),
            api_name="segment",
            concurrency_limit=2,
        )
    return demo


def serve(blocks: gr.Blocks, catalog: ModelCatalog) -> None:
    """Start the server the way every deployment does (port and host from GRADIO_SERVER_*), with
    cross-origin isolation on every response and the browser backend's files beside the page."""
    from starlette.middleware import Middleware

    blocks.queue(max_size=64, default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_UPLOAD,
        show_error=True,
        app_kwargs={"middleware": [Middleware(CrossOriginIsolation)]},
        prevent_thread_lock=True,
    )
    # Routes, unlike middleware, can join a running app; the page asks for them only once loaded.
    add_browser_routes(blocks.app, catalog, WEB)
    blocks.block_thread()


catalog = ModelCatalog(ASSETS)
demo = build_demo(catalog)

if __name__ == "__main__":
    catalog.warm_up()
    serve(demo, catalog)
