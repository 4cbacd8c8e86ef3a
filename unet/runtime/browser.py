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


# The ES module file of each npm package the page imports by name (an import map points at it):
# LiteRT.js and its helper, and the PNG decoder for 16-bit images with its two dependencies.
MODULE_FILES = {
    "@litertjs/core": "dist/index.js",
    "@litertjs/wasm-utils": "dist/bundle.js",
    "fast-png": "lib/index.js",
    "iobuffer": "lib/iobuffer.js",
    "fflate": "esm/browser.js",
}


def pinned_versions(web_dir: Path) -> dict[str, str]:
    """Each package's version, as web/package-lock.json pins it."""
    packages = json.loads((web_dir / "package-lock.json").read_text())["packages"]
    return {name: packages[f"node_modules/{name}"]["version"] for name in MODULE_FILES}


def module_sources(web_dir: Path) -> dict:
    """The import map and LiteRT.js's WASM folder: served from web/node_modules when `npm ci`
    installed it, else the same pinned versions from a public CDN."""
    versions = pinned_versions(web_dir)
    local = all((web_dir / "node_modules" / name / file).is_file() for name, file in MODULE_FILES.items())

    def package_url(name: str) -> str:
        return f"{ROUTE}/npm/{name}" if local else f"{CDN}/{name}@{versions[name]}"

    return {"imports": {name: f"{package_url(name)}/{file}" for name, file in MODULE_FILES.items()},
            "wasm": f"{package_url('@litertjs/core')}/wasm/", "source": "local" if local else "cdn",
            "version": versions["@litertjs/core"]}


# The files a page may fetch: the browser's variant, and float32 to compare it with.
SERVED_VARIANTS = (BROWSER_VARIANT, "float32")


def browser_files(catalog) -> dict[str, dict[str, Path]]:
    """{model: {"metadata": path, variant: path, ...}} for each model with a browser variant."""
    files = {}
    for name, model in catalog.models.items():
        any_file = next(iter(model.files.values()))
        if variant_path(any_file, BROWSER_VARIANT).is_file():
            files[name] = {"metadata": metadata_path_for(any_file),
                           **{variant: variant_path(any_file, variant) for variant in SERVED_VARIANTS
                              if variant_path(any_file, variant).is_file()}}
    return files


def add_browser_routes(app, catalog, web_dir: Path) -> None:
    """Serve config.json, web/, LiteRT.js (when installed) and the models' browser files."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    files = browser_files(catalog)
    models = {name: {"metadata": f"{ROUTE}/models/{name}/metadata.json",
                     "variants": {variant: f"{ROUTE}/models/{name}/{variant}.tflite"
                                  for variant in paths if variant != "metadata"}}
              for name, paths in files.items()}
    config = {"litert": module_sources(web_dir), "models": models, "variant": BROWSER_VARIANT}

    @app.get(f"{ROUTE}/config.json")
    def browser_config():
        return JSONResponse(config)

    @app.get(ROUTE + "/models/{name}/{file}")
    def browser_model_file(name: str, file: str):
        key = file.removesuffix(".json").removesuffix(".tflite")
        if name not in files or key not in files[name] or file not in (f"{key}.json", f"{key}.tflite"):
            raise HTTPException(404, f"no browser file {file!r} for model {name!r}")
        return FileResponse(files[name][key])

    app.mount(f"{ROUTE}/web", StaticFiles(directory=web_dir, check_dir=False), name="unet-edge-web")
    if config["litert"]["source"] == "local":
        app.mount(f"{ROUTE}/npm", StaticFiles(directory=web_dir / "node_modules"), name="unet-edge-npm")


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
