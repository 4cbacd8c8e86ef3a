"""A corpus of awkward and broken uploads, shared by the app and edge-runner suites.

Each case is (file name, bytes writer, what must happen): "segments" (with the expected
(height, width) of the result) or "refused" (with a fragment the error message must contain).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    write: Callable[[Path], None]
    expected_size: tuple[int, int] | None = None
    error: str | None = None


def _pil(image: Image.Image, **save) -> Callable[[Path], None]:
    return lambda path: image.save(path, **save)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _gradient(height: int, width: int) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)


def _truncated(format_name: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_gradient(64, 64)).convert("RGB").save(buffer, format=format_name)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def _animated_gif(path: Path) -> None:
    frames = [Image.fromarray(_gradient(40, 30) // (k + 1)) for k in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _tiff(array: np.ndarray, pages: int = 1) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import tifffile

        tifffile.imwrite(path, np.stack([array] * pages) if pages > 1 else array)

    return write


def _exif_rotated(path: Path) -> None:
    image = Image.fromarray(np.dstack([_gradient(30, 50)] * 3))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(path, exif=exif)


BAD_INPUTS = [
    Case("zero-bytes.png", _bytes(b""), error="empty"),
    Case("truncated.png", _bytes(_truncated("PNG")), error="not a readable image"),
    Case("truncated.jpg", _bytes(_truncated("JPEG")), error="not a readable image"),
    Case("random-bytes.png", _bytes(np.random.default_rng(0).bytes(4096)), error="not a readable image"),
    Case("notes.png", _bytes(b"this is a text file, not a picture\n" * 20), error="not a readable image"),
    Case("random-bytes.tif", _bytes(b"II*\x00" + np.random.default_rng(1).bytes(512)), error="not a readable"),
]

AWKWARD_INPUTS = [
    Case("animated.gif", _animated_gif, expected_size=(40, 30)),
    Case("multipage.tif", _tiff(_gradient(36, 28), pages=3), expected_size=(36, 28)),
    Case("float32.tif", _tiff(np.random.default_rng(2).normal(size=(33, 47)).astype(np.float32)),
         expected_size=(33, 47)),
    Case("one-pixel.png", _pil(Image.new("L", (1, 1), 128)), expected_size=(1, 1)),
    Case("one-row.png", _pil(Image.fromarray(_gradient(1, 300))), expected_size=(1, 300)),
    Case("one-column.png", _pil(Image.fromarray(_gradient(300, 1))), expected_size=(300, 1)),
    Case("sixteen-bit.png", _pil(Image.fromarray(_gradient(40, 50).astype(np.uint16) * 257)),
         expected_size=(40, 50)),
    Case("cmyk.jpg", _pil(Image.new("CMYK", (30, 20), (0, 255, 255, 0))), expected_size=(20, 30)),
    Case("transparent.png", _pil(Image.new("RGBA", (50, 40), (200, 10, 10, 0))), expected_size=(40, 50)),
    Case("exif-rotated.jpg", _exif_rotated, expected_size=(50, 30)),
]


def write_corpus(folder: Path, cases: list[Case]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        path = folder / case.name
        case.write(path)
        paths[case.name] = path
    return paths
