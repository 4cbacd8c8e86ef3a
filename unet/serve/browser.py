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
import math
import struct
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


# What the page's `device_result` event may hold. Anyone can post to the app's queue, so every
# field is checked before anything is decoded: the kind, the length of text, the range of numbers.
DEVICE_TEXT_FIELDS = ("model", "backend", "accelerator", "litert")
DEVICE_FIELDS = (*DEVICE_TEXT_FIELDS, "threads", "cores", "p50_ms", "p95_ms", "instances", "width", "height",
                 "mask_png", "instances_png")
MAX_TEXT_LENGTH = 200
# Instance ids travel in a PNG's red and green bytes.
MAX_INSTANCE_ID = 65535
MAX_CORES = 4096
MAX_MILLISECONDS = 3_600_000.0
PNG_PREFIX = "data:image/png;base64,"
# A PNG of (H, W) RGBA pixels stored without compression, as base64: the largest a page sends.
PNG_OVERHEAD_BYTES = 64 * 1024


def max_png_url_length(size: tuple[int, int]) -> int:
    return len(PNG_PREFIX) + 4 * (size[0] * (4 * size[1] + 1) + PNG_OVERHEAD_BYTES) // 3 + 4


def _text(payload: dict, key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise UserError(f"the browser's {key} is not a short text")
    return value


def _number(payload: dict, key: str, low: float, high: float, integer: bool = False) -> float | int | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) \
            or not math.isfinite(value) or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise UserError(f"the browser's {key} is not {kind} from {low:g} to {high:g}")
    return value


def png_size(data: bytes, what: str) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, read before any pixel is."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise UserError(f"cannot decode the browser's {what}: not a PNG")
    return struct.unpack(">II", data[16:24])


def _values_png(data_url: object, size: tuple[int, int], what: str, limit: int) -> np.ndarray:
    """A PNG data URL whose red and green bytes hold the values (low, high) -> (H, W) int32, at most `limit`.

    Its length is capped and its width and height are read from its header before any pixel is
    decoded, so a forged 30000x30000 PNG costs the server nothing.
    """
    if not isinstance(data_url, str) or not data_url.startswith(PNG_PREFIX):
        raise UserError(f"the browser's {what} is not a PNG data URL")
    if len(data_url) > max_png_url_length(size):
        raise UserError(f"the browser's {what} is {len(data_url) / 1e6:.1f} MB, more than a "
                        f"{size[1]}x{size[0]} mask can take")
    try:
        data = base64.b64decode(data_url[len(PNG_PREFIX):], validate=True)
    except ValueError as error:
        raise UserError(f"cannot decode the browser's {what}: not base64") from error
    width, height = png_size(data, what)
    if (height, width) != size:
        raise UserError(f"the browser's {what} is {width}x{height}, the image {size[1]}x{size[0]}")
    try:
        picture = Image.open(io.BytesIO(data), formats=["PNG"])
    except (OSError, ValueError) as error:
        raise UserError(f"cannot decode the browser's {what}: a damaged PNG") from error
    try:
        rgba = np.asarray(picture.convert("RGBA"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot decode the browser's {what}: a damaged PNG") from error
    values = rgba[..., 0].astype(np.int32) | (rgba[..., 1].astype(np.int32) << 8)
    if values.max(initial=0) > limit:
        raise UserError(f"the browser's {what} holds {int(values.max())}, above the largest possible {limit}")
    return values


def device_segmentation(payload: object, size: tuple[int, int], num_classes: int) -> DeviceSegmentation:
    """Read what the page's `device_result` event sent, checked against the image's (H, W).

    Every refusal is one line naming the field; nothing larger than the image is decoded.
    """
    if not isinstance(payload, dict) or "mask_png" not in payload:
        raise UserError("the browser sent no on-device result")
    unknown = sorted(str(key)[:40] for key in payload if key not in DEVICE_FIELDS)
    if unknown:
        raise UserError(f"the browser's result has fields this server does not know: "
                        f"{', '.join(unknown[:5])}")
    texts = {key: _text(payload, key) for key in DEVICE_TEXT_FIELDS}
    threads = _number(payload, "threads", 1, MAX_CORES, integer=True)
    cores = _number(payload, "cores", 1, MAX_CORES, integer=True)
    p50_ms = _number(payload, "p50_ms", 0.0, MAX_MILLISECONDS)
    p95_ms = _number(payload, "p95_ms", 0.0, MAX_MILLISECONDS)
    pixels = size[0] * size[1]
    instances = _number(payload, "instances", 0, pixels, integer=True)
    for key, expected in (("height", size[0]), ("width", size[1])):
        _number(payload, key, expected, expected, integer=True)
    class_mask = _values_png(payload["mask_png"], size, "class mask", num_classes - 1).astype(np.uint8)
    instance_labels = None
    if payload.get("instances_png") is not None:
        instance_labels = _values_png(payload["instances_png"], size, "instance labels", MAX_INSTANCE_ID)
    backend = f"this device: {texts['backend'] or 'LiteRT.js'} [{threads or '?'} of {cores or '?'} cores]"
    return DeviceSegmentation(class_mask, instance_labels, backend,
                              float("nan") if p50_ms is None else float(p50_ms),
                              float("nan") if p95_ms is None else float(p95_ms), instances)
