"""unet-edge demo: upload an image, see the masks of two backends side by side.

    python app.py                     # http://127.0.0.1:7860 (GRADIO_SERVER_NAME=0.0.0.0 in Docker)

The page's layout and its launch only. What each event does is `unet.serve.handlers` (plain
methods, callable and testable without a server); the comparisons are `unet.serve.compare`, the
browser backend's files and payloads `unet.serve.browser`, the server's start `unet.serve.launch`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import gradio as gr

from unet.serve.browser import module_sources
from unet.serve.compare import ModelCatalog
from unet.serve.components import DEVICE_PANEL, DEVICE_PANEL_CSS, DEVICE_PANEL_JS, image_upload
from unet.serve.handlers import DeviceView, Handlers, SegmentView, applicable_controls
from unet.serve.launch import serve

ASSETS = Path(os.environ.get("UNET_ASSETS", Path(__file__).resolve().parent / "assets"))
WEB = Path(__file__).resolve().parent / "web"


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
                flips = gr.Checkbox(False, label="Test-time flips (average over mirror images, 4x the time)",
                                    elem_id="flips")
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
            inputs=[image, model, backend_a, backend_b, threshold, opacity, runs, diameter, auto_scale,
                    flips],
            outputs=list(outputs.values()),
            api_name="segment",
            concurrency_limit=2,
        )
    return demo


catalog = ModelCatalog(ASSETS)
demo = build_demo(catalog)

if __name__ == "__main__":
    catalog.warm_up()
    serve(demo, catalog, WEB)
