"""Start the app's server the way every deployment does: port and host from GRADIO_SERVER_*,
cross-origin isolation on every response, the browser backend's files beside the page.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from unet.serve.browser import CrossOriginIsolation, add_browser_routes
from unet.serve.compare import ModelCatalog

MAX_UPLOAD = "40mb"


def serve(blocks: gr.Blocks, catalog: ModelCatalog, web_dir: Path) -> None:
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
    add_browser_routes(blocks.app, catalog, web_dir)
    blocks.block_thread()
