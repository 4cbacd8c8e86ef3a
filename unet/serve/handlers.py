"""What the app does for each event, as plain methods that can be called and tested without a server.

`Handlers.segment` is the main event (the /segment API), `device_result` reads what the page's
on-device run sends back, `update_backends` follows a change of model. Each returns a view whose
fields the page's outputs follow in order.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from unet.runtime import errors
from unet.runtime.imageio import ImageReadError, image_files, image_size, read_image
from unet.runtime.overlay import mask_image, save_instance_labels, save_png
from unet.runtime.scale import AUTO_SCALE_TOLERANCE_TEXT
from unet.serve.browser import device_segmentation
from unet.serve.compare import (
    Comparison,
    ModelCatalog,
    agreement_sentence,
    compare,
    compare_device,
    table_headers,
)

MAX_PIXELS = 4_000_000
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
FLIPS_NOTE = ("Test-time flips: each backend averaged its output over the image and its three mirror "
              "images, four model calls per window; the latency table times one.")


def checked_number(value: object, name: str, low: float, high: float) -> float:
    """A number from a request (the page or any client), refused in one line unless finite and in range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise UserError(f"{name} must be a number from {low:g} to {high:g}, got {str(value)[:40]!r}")
    return float(value)


class PageOutputs:
    """A view whose fields are a handler's outputs, in the order the page lists them."""

    def values(self) -> list:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclass
class SegmentView(PageOutputs):
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


@dataclass
class DeviceView(PageOutputs):
    """What one on-device result shows; the page's outputs follow these fields in order."""

    overlay: str
    disagreement: str
    table: gr.Dataframe
    notes: str
    summary: dict


@dataclass
class ResultFiles:
    overlays: list[str]
    disagreement: str
    masks: list[str]


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
        flips: bool = False,
    ) -> Comparison:
        try:
            return compare(self.catalog, image, model_name, backends, threshold, opacity, timed_runs,
                           object_diameter, auto_scale, flips)
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
        flips: bool = False,
    ) -> SegmentView:
        """The main event (api_name="segment"): overlays, slider, disagreement, table, files, JSON.

        object_diameter: the objects' diameter in pixels (0: use the image as it is); the image is
        rescaled so they match the model's trained diameter. auto_scale: estimate it instead.
        flips: average each backend's probabilities over the image and its three mirror images.
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
                                  float(object_diameter) if object_diameter else None, bool(auto_scale),
                                  bool(flips))
        note_lines = [*notes,
                      f"Agreement: {agreement_sentence(comparison.agreement)}.",
                      "Latency is the model call only, on this server's CPU: not Raspberry Pi latency "
                      "(the README's \"Raspberry Pi\" section says how to measure on a Pi).",
                      *scale_notes(comparison.summary["scale"], metadata),
                      *([FLIPS_NOTE] if flips else [])]
        comparison.summary["notes"] = notes
        files = self.write_result_files(comparison, model_name)
        return SegmentView(
            overlay_a=files.overlays[0],
            overlay_b=files.overlays[1],
            slider=(files.overlays[0], files.overlays[1]),
            disagreement=files.disagreement,
            table=gr.Dataframe(value=comparison.table(), headers=table_headers(metadata)),
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
        note = (f"{device.backend} against {reference_backend} (resized to the model input on both): "
                f"{agreement_sentence(result.agreement)}. Latency measured by the browser on this device; "
                "the image was not sent for it.")
        table = gr.Dataframe(value=[*rows, result.row], headers=table_headers(model.metadata))
        return DeviceView(str(overlay), str(disagreement), table, note, result.summary)

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
    spread = scale.get("spread_magnification", 1.0)
    spread_note = (f", x{spread:.2f} of it because their sizes spread widely, so that the smaller ones "
                   "come nearer that size," if spread > 1.0 else "")
    return [f"Scale: objects of {scale['object_diameter_px']:.1f} px ({scale['method']}) were "
            f"rescaled x{scale['factor']:.2f} to the trained {metadata.object_diameter} px{spread_note} and "
            "segmented in model-sized windows."]
