"""unet-edge demo: upload an image, see the masks of two backends side by side.

    python app.py                     # http://127.0.0.1:7860 (GRADIO_SERVER_NAME=0.0.0.0 in Docker)

The UI only: every computation lives in `unet.compare`, so the handlers can be called and
tested without a server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np

from unet.compare import KERAS, Comparison, ModelCatalog, compare
from unet.imageio import ImageReadError, image_size, read_image
from unet.overlay import mask_image, save_instance_labels, save_png

ASSETS = Path(os.environ.get("UNET_ASSETS", Path(__file__).resolve().parent / "assets"))
EXAMPLES = ASSETS / "examples"
MAX_PIXELS = 4_000_000
MAX_UPLOAD = "40mb"
DOWNLOADS = Path(tempfile.gettempdir()) / "unet-edge-downloads"
DOWNLOAD_LIFETIME_S = 600
PRUNE_INTERVAL_S = 60
last_pruned = 0.0

catalog = ModelCatalog(ASSETS)
png_writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="png")


class UserError(gr.Error):
    """A message for the user about their input: shown in the UI, no server-side traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)


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


def default_backends(model_name: str) -> tuple[str, str]:
    backends = catalog.models[model_name].backends
    first = KERAS if KERAS in backends else backends[0]
    second = "LiteRT int8" if "LiteRT int8" in backends else backends[-1]
    return first, second


def load_upload(path: str | None) -> tuple[np.ndarray, list[str]]:
    """Decode an upload with the project's decoder; bound its size with a visible note."""
    if not path:
        raise UserError("No image: upload one, paste one, or pick an example.")
    try:
        image = read_image(path, max_pixels=MAX_PIXELS)
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


def request_folder() -> Path:
    """A private folder for one request's files; about once a minute, old folders are removed."""
    global last_pruned
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    now = time.time()
    # Pruning stats every folder; on each request that cost grows with the request rate.
    if now - last_pruned >= PRUNE_INTERVAL_S:
        last_pruned = now
        for old in DOWNLOADS.iterdir():
            if old.is_dir() and old.stat().st_mtime < now - DOWNLOAD_LIFETIME_S:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=DOWNLOADS))


def write_result_files(comparison: Comparison, model_name: str) -> tuple[list[str], str, list[str]]:
    """Overlay PNGs, the disagreement PNG and mask PNGs of both backends, in a request folder.

    Handing gradio files rather than arrays matters under load: gradio caches an array output
    by rewriting a file named after its content hash, so two requests with the same result
    could stream a file that the other is rewriting; files are copied into its cache atomically.
    Pillow releases the GIL while it compresses, so the five files are encoded two at a time.
    """
    folder = request_folder()
    colours = catalog.models[model_name].metadata.class_colours
    writes = {}
    for result in comparison.results:
        slug = result.backend.lower().replace(" ", "-")
        writes[f"overlay {slug}"] = (save_png, result.overlay, folder / f"{model_name}-{slug}-overlay.png")
        segmentation = result.segmentation
        if segmentation.instance_labels is not None:
            path = folder / f"{model_name}-{slug}-instances.png"
            writes[f"mask {slug}"] = (save_instance_labels, segmentation.instance_labels, path)
        else:
            path = folder / f"{model_name}-{slug}-mask.png"
            writes[f"mask {slug}"] = (save_png, mask_image(segmentation.class_mask, colours), path)
    writes["disagreement"] = (save_png, comparison.disagreement, folder / f"{model_name}-disagreement.png")
    futures = {name: png_writers.submit(*job) for name, job in writes.items()}
    written = {name: str(future.result()) for name, future in futures.items()}
    overlays = [written[name] for name in writes if name.startswith("overlay ")]
    masks = [written[name] for name in writes if name.startswith("mask ")]
    return overlays, written["disagreement"], masks


def segment(
    image_path: str | None,
    model_name: str | None = None,
    backend_a: str | None = None,
    backend_b: str | None = None,
    threshold: float = 0.5,
    opacity: float = 0.5,
    timed_runs: int = 10,
):
    """The main event (api_name="segment"): overlays, slider, disagreement, table, files, JSON."""
    model_name = model_name or next(iter(catalog.models))
    if model_name not in catalog.models:
        raise UserError(f"Unknown model {model_name!r}; choose one of {', '.join(catalog.models)}.")
    defaults = default_backends(model_name)
    chosen = (backend_a or defaults[0], backend_b or defaults[1])
    image, notes = load_upload(image_path)
    metadata = catalog.models[model_name].metadata
    binary_threshold = threshold if metadata.output_channels == 1 else None
    try:
        comparison = compare(catalog, image, model_name, chosen, binary_threshold, opacity, int(timed_runs))
    except ValueError as error:
        raise UserError(str(error)) from error
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
                  "(the README's \"Raspberry Pi\" section says how to measure on a Pi)."]
    comparison.summary["notes"] = notes
    overlays, disagreement, masks = write_result_files(comparison, model_name)
    return (
        overlays[0],
        overlays[1],
        (overlays[0], overlays[1]),
        disagreement,
        gr.Dataframe(value=comparison.table(), headers=headers),
        "\n\n".join(note_lines),
        masks,
        comparison.summary,
    )


def update_backends(model_name: str):
    model = catalog.models[model_name]
    first, second = default_backends(model_name)
    return (
        gr.Dropdown(choices=model.backends, value=first),
        gr.Dropdown(choices=model.backends, value=second),
        describe(model_name),
    )


def describe(model_name: str) -> str:
    """The model's one-line summary and a legend of its class colours."""
    model = catalog.models[model_name]
    metadata = model.metadata
    if metadata.mode == "instance":
        legend = "each object in its own colour, outlined in white"
    else:
        legend = " ".join(
            f'<span style="color: rgb{tuple(colour)}">&#9632;</span> {name}'
            for name, colour in zip(metadata.class_names[1:], metadata.class_colours[1:], strict=True)
        )
    return f"**{model.summary}** Legend: {legend}"


def example_images() -> list[list[str]]:
    """[image, model] pairs: an example named `MODEL-*.png` opens with that model selected."""
    if not EXAMPLES.is_dir():
        return []
    suffixes = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
    examples = []
    for path in sorted(EXAMPLES.iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        model = next((name for name in catalog.models if path.name.startswith(f"{name}-")), None)
        examples.append([str(path), model or next(iter(catalog.models))])
    return examples


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="unet-edge", delete_cache=(600, 600)) as demo:
        gr.Markdown("# unet-edge\nU-Net segmentation from Keras to a Raspberry Pi: compare the float "
                    "model with its quantised LiteRT versions on your own image.")
        if not catalog.models:
            gr.Markdown(f"**No models found in `{ASSETS}`.** Run `make models` to build them.")
            return demo
        first_model = next(iter(catalog.models))
        first_a, first_b = default_backends(first_model)
        with gr.Row():
            model = gr.Dropdown(list(catalog.models), value=first_model, label="Model", elem_id="model")
            backend_a = gr.Dropdown(catalog.models[first_model].backends, value=first_a, label="Backend A")
            backend_b = gr.Dropdown(catalog.models[first_model].backends, value=first_b, label="Backend B")
        description = gr.Markdown(describe(first_model))
        with gr.Row():
            image = image_upload(sources=["upload", "clipboard", "webcam"], label="Image", elem_id="image")
            with gr.Column():
                threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Threshold (binary models)")
                opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                runs = gr.Slider(1, 50, value=10, step=1, label="Timed runs (after one warm-up)",
                                 elem_id="timed-runs")
                run = gr.Button("Segment", variant="primary")
        examples = example_images()
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
        table = gr.Dataframe(label="Latency and size", interactive=False)
        notes = gr.Markdown()
        downloads = gr.File(label="Masks (PNG)", file_count="multiple")
        summary = gr.JSON(label="Summary")
        model.change(update_backends, inputs=model, outputs=[backend_a, backend_b, description])
        run.click(
            segment,
            inputs=[image, model, backend_a, backend_b, threshold, opacity, runs],
            outputs=[overlay_a, overlay_b, slider, disagreement, table, notes, downloads, summary],
            api_name="segment",
            concurrency_limit=2,
        )
    return demo


def serve(blocks: gr.Blocks) -> None:
    """Start the server the way every deployment does (port and host from GRADIO_SERVER_*)."""
    blocks.queue(max_size=64, default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_UPLOAD,
        show_error=True,
    )


demo = build_demo()

if __name__ == "__main__":
    catalog.warm_up()
    serve(demo)
