"""The page's own pieces: an upload component that hands the file itself to the handler, and
the on-device panel (LiteRT.js in the visitor's browser; web/unet-edge.js does the work).
"""

from __future__ import annotations

import gradio as gr


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
