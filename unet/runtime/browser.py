"""What the app serves to the browser backend (web/), and what it reads back from it.

The page runs LiteRT.js on the visitor's device. It needs, from this origin:
- `config.json`: where LiteRT.js comes from and each model's metadata and browser variant;
- LiteRT.js itself, from the npm folder `make demo` installs (`web/node_modules`), or else the
  same pinned version from a public CDN, which `config.json` then names;
- the modules in web/, and the shipped models' `.json` and `.tflite` files (never `.keras`);
- cross-origin isolation headers (COOP/COEP), without which WebAssembly gets no threads.
The page sends back masks and timings (`device_segmentation`), never the image.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unet.runtime.errors import UserError
from unet.runtime.metadata import metadata_path_for
from unet.runtime.variants import BROWSER_VARIANT, variant_path

ROUTE = "/unet-edge"
CDN = "https://cdn.jsdelivr.net/npm"
ISOLATION_HEADERS = (
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def litert_version(web_dir: Path) -> str:
    """The @litertjs/core version pinned by web/package-lock.json."""
    lock = json.loads((web_dir / "package-lock.json").read_text())
    return lock["packages"]["node_modules/@litertjs/core"]["version"]


def litert_source(web_dir: Path) -> dict:
    """URLs of LiteRT.js's module, its wasm-utils bundle and its WASM folder, local or CDN."""
    version = litert_version(web_dir)
    if (web_dir / "node_modules" / "@litertjs" / "core" / "wasm").is_dir():
        base, source = f"{ROUTE}/litertjs", "local"
        core, utils = f"{base}/core", f"{base}/wasm-utils"
    else:
        source = "cdn"
        core, utils = f"{CDN}/@litertjs/core@{version}", f"{CDN}/@litertjs/wasm-utils@{version}"
    return {"core": f"{core}/dist/index.js", "wasmUtils": f"{utils}/dist/bundle.js", "wasm": f"{core}/wasm/",
            "source": source, "version": version}


def browser_files(catalog) -> dict[str, tuple[Path, Path]]:
    """(metadata, browser variant) of each catalog model that has a browser variant."""
    files = {}
    for name, model in catalog.models.items():
        any_file = next(iter(model.files.values()))
        if variant_path(any_file, BROWSER_VARIANT).is_file():
            files[name] = (metadata_path_for(any_file), variant_path(any_file, BROWSER_VARIANT))
    return files


def add_browser_routes(app, catalog, web_dir: Path) -> None:
    """Serve config.json, web/, LiteRT.js (when installed) and the models' browser files."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    files = browser_files(catalog)
    models = {name: {"metadata": f"{ROUTE}/models/{name}/metadata.json",
                     "model": f"{ROUTE}/models/{name}/model.tflite"} for name in files}
    config = {"litert": litert_source(web_dir), "models": models, "variant": BROWSER_VARIANT}

    @app.get(f"{ROUTE}/config.json")
    def browser_config():
        return JSONResponse(config)

    @app.get(ROUTE + "/models/{name}/{file}")
    def browser_model_file(name: str, file: str):
        if name not in files or file not in ("metadata.json", "model.tflite"):
            raise HTTPException(404, f"no browser file {file!r} for model {name!r}")
        return FileResponse(files[name][0 if file == "metadata.json" else 1])

    app.mount(f"{ROUTE}/web", StaticFiles(directory=web_dir, check_dir=False), name="unet-edge-web")
    litert_dir = web_dir / "node_modules" / "@litertjs"
    if litert_dir.is_dir():
        app.mount(f"{ROUTE}/litertjs", StaticFiles(directory=litert_dir), name="unet-edge-litertjs")


class CrossOriginIsolation:
    """ASGI middleware: COOP/COEP on every response, so the page may run WebAssembly threads."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(header for header in ISOLATION_HEADERS if header[0] not in names)]
            await send(message)

        return await self.app(scope, receive, send_with_headers)


@dataclass
class DeviceSegmentation:
    """The browser backend's result as the server reads it: masks and timings, no pixels."""

    class_mask: np.ndarray
    instance_labels: np.ndarray | None
    backend: str
    p50_ms: float
    p95_ms: float
    instances: int | None


def _values_png(data_url: str, size: tuple[int, int], what: str) -> np.ndarray:
    """A PNG data URL whose red and green bytes hold the values (low, high) -> (H, W) int32."""
    prefix = "data:image/png;base64,"
    if not isinstance(data_url, str) or not data_url.startswith(prefix):
        raise UserError(f"the browser's {what} is not a PNG data URL")
    try:
        picture = Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):], validate=True)))
        rgba = np.asarray(picture.convert("RGBA"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot decode the browser's {what}: {error}") from error
    if rgba.shape[:2] != size:
        raise UserError(f"the browser's {what} is {rgba.shape[1]}x{rgba.shape[0]}, the image "
                        f"{size[1]}x{size[0]}")
    return rgba[..., 0].astype(np.int32) | (rgba[..., 1].astype(np.int32) << 8)


def device_segmentation(payload: dict, size: tuple[int, int]) -> DeviceSegmentation:
    """Read what the page's `device_result` event sent, checked against the image's (H, W)."""
    if not isinstance(payload, dict) or "mask_png" not in payload:
        raise UserError("the browser sent no on-device result")
    class_mask = _values_png(payload["mask_png"], size, "class mask").astype(np.uint8)
    instance_labels = None
    if payload.get("instances_png"):
        instance_labels = _values_png(payload["instances_png"], size, "instance labels")
    threads = f"{payload.get('threads', '?')} of {payload.get('cores', '?')} cores"
    return DeviceSegmentation(class_mask, instance_labels,
                              f"this device: {payload.get('backend', 'LiteRT.js')} [{threads}]",
                              float(payload.get("p50_ms", float("nan"))),
                              float(payload.get("p95_ms", float("nan"))), payload.get("instances"))
