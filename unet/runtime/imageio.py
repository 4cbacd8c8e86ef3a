"""Decode image and mask files into numpy arrays: the one decoding path for every consumer.

Pillow decodes PNG, JPEG, GIF, BMP and WebP; tifffile (with imagecodecs for LZW and friends)
decodes TIFF. Orientation from EXIF is applied, palette, CMYK and alpha images become RGB or
grayscale, and 16-bit and float data keep their dtype so normalisation can see real values.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unet.runtime.errors import UserError

ImageSource = str | Path | bytes | np.ndarray | Image.Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")
# Pillow refuses images above ~179 Mpx as decompression bombs; a 12000x9000 photo is 108 Mpx.
MAX_DECODE_PIXELS = 150_000_000


class ImageReadError(UserError):
    """A file is not an image this project can read; the message names the file."""


def is_image_file(path: Path) -> bool:
    """A visible file whose suffix is one this project decodes."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(path for path in Path(folder).iterdir() if is_image_file(path))


def describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def read_image(source: ImageSource, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image into an array of shape (H, W) or (H, W, 3).

    dtype is uint8, uint16 or float32 as stored. With `max_pixels`, larger images are
    downscaled (aspect ratio kept) so that H * W <= max_pixels.
    """
    if isinstance(source, np.ndarray):
        image = _normalise_array_layout(source, describe(source))
    elif _is_tiff(source):
        image = _read_tiff(source)
    else:
        picture = open_image(source, max_pixels)
        if max_pixels and picture.mode in ("L", "RGB") and picture.width * picture.height > max_pixels:
            # 8-bit data is resized by Pillow in place of a float copy of the full-size image.
            size = size_within(picture.width, picture.height, max_pixels)
            picture = picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        image = pil_to_array(picture)
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        image = downscale_to(image, max_pixels)
    return image


def open_image(source: str | Path | bytes | Image.Image, max_pixels: int | None = None) -> Image.Image:
    """Open with Pillow, apply EXIF orientation and keep the first frame only.

    With `max_pixels`, a large JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, still at
    least `max_pixels`), so a 100-megapixel photo never occupies its full size in memory.
    """
    if isinstance(source, Image.Image):
        return ImageOps.exif_transpose(source)
    name = describe(source)
    Image.MAX_IMAGE_PIXELS = MAX_DECODE_PIXELS
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as error:
        raise ImageReadError(f"cannot open {name}: {error.strerror or error}") from error
    with stream:
        try:
            image = Image.open(stream)
            image.seek(0)
            width, height = image.size
            if max_pixels and image.format == "JPEG" and width * height > max_pixels:
                image.draft(image.mode, size_within(width, height, max_pixels))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
        except Image.DecompressionBombError as error:
            raise ImageReadError(f"{name} is too large to decode safely: {error}") from error
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
            if isinstance(source, (str, Path)) and Path(source).stat().st_size == 0:
                raise ImageReadError(f"{name} is an empty file (0 bytes)") from error
            if isinstance(source, bytes) and not source:
                raise ImageReadError("the upload is empty (0 bytes)") from error
            reason = ("not a PNG, JPEG, TIFF, BMP, GIF or WebP file"
                      if isinstance(error, UnidentifiedImageError) else str(error))
            raise ImageReadError(f"{name} is not a readable image: {reason}") from error
    return image


def image_size(source: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels."""
    if _is_tiff(source):
        import tifffile

        try:
            with tifffile.TiffFile(source) as tiff:
                return tuple(tiff.pages[0].shape[:2])
        except Exception as error:
            raise ImageReadError(f"{describe(source)} is not a readable TIFF: {error}") from error
    try:
        with Image.open(source) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{describe(source)} is not a readable image: {error}") from error
    return height, width


def pil_to_array(image: Image.Image) -> np.ndarray:
    """Pillow image -> (H, W) or (H, W, 3) array; palette/CMYK/YCbCr -> RGB, alpha dropped."""
    mode = image.mode
    if mode in ("1", "L", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image)
    elif mode == "I":
        array = np.asarray(image)
        array = array.astype(np.uint16) if array.min() >= 0 and array.max() <= 65535 else array
    elif mode == "LA":
        array = np.asarray(image.getchannel("L"))
    elif mode == "RGB":
        array = np.asarray(image)
    else:
        array = np.asarray(image.convert("RGB"))
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return _normalise_array_layout(array, "image")


def _is_tiff(source: ImageSource) -> bool:
    if isinstance(source, (str, Path)):
        return Path(source).suffix.lower() in TIFF_SUFFIXES
    if isinstance(source, bytes):
        return source[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    return False


def _read_tiff(source: str | Path | bytes) -> np.ndarray:
    import logging

    import tifffile

    # tifffile logs what it cannot parse; the ImageReadError below already says it, once.
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)

    name = describe(source)
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        with tifffile.TiffFile(handle) as tiff:
            if not tiff.pages:
                raise ImageReadError(f"{name} is not a readable TIFF: it has no image pages")
            page = tiff.pages[0]
            array = page.asarray()
            photometric = getattr(page, "photometric", None)
    except ImageReadError:
        raise
    except FileNotFoundError as error:
        raise ImageReadError(f"cannot open {name}: no such file") from error
    except Exception as error:  # tifffile raises many kinds for corrupt data
        if isinstance(source, (str, Path)) and Path(source).is_file() and Path(source).stat().st_size == 0:
            raise ImageReadError(f"{name} is an empty file (0 bytes)") from error
        raise ImageReadError(f"{name} is not a readable TIFF: {error}") from error
    if photometric is not None and int(photometric) == 5 and array.ndim == 3:  # CMYK
        cmyk = array[..., :4].astype(np.float32) / np.iinfo(array.dtype).max
        array = (255 * (1 - cmyk[..., :3]) * (1 - cmyk[..., 3:4])).round().astype(np.uint8)
    return _normalise_array_layout(array, name)


def _normalise_array_layout(array: np.ndarray, name: str) -> np.ndarray:
    """Bring an array to (H, W) or (H, W, 3) with dtype uint8, uint16 or float32."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if (array.ndim == 3 and array.shape[-1] == 1) or (array.ndim == 3 and array.shape[-1] == 2):
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ImageReadError(
            f"{name} has shape {array.shape}; expected (H, W) grayscale or (H, W, 3) colour"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageReadError(f"{name} is empty (shape {array.shape})")
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype in (np.uint8, np.uint16, np.float32):
        return array
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 255 and array.dtype.itemsize == 1:
            return array.astype(np.uint8)
        if low >= 0 and high <= 65535:
            return array.astype(np.uint16)
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
        return array
    raise ImageReadError(f"{name} has unsupported dtype {array.dtype}")


def downscale_to(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """Downscale (H, W[, 3]) so that H * W <= max_pixels, keeping aspect ratio and dtype."""
    height, width = image.shape[:2]
    new_width, new_height = size_within(width, height, max_pixels)
    return resize_array(image, (new_height, new_width), Image.Resampling.BILINEAR)


def size_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect ratio kept, so that width * height <= max_pixels."""
    scale = (max_pixels / float(width * height)) ** 0.5
    return max(1, int(width * scale)), max(1, int(height * scale))


def resize_nearest(array: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of (h, w[, C]) by index lookup, any dtype, picking the pixels
    Pillow picks: labels of any width keep their values, in 0.3 ms at 512x512 where a round trip
    through Pillow's float mode took 1 ms."""
    height, width = size_hw
    if array.shape[:2] == (height, width):
        return array
    rows = _nearest_sources(array.shape[0], height)
    cols = _nearest_sources(array.shape[1], width)
    return array[rows[:, None], cols[None, :]]


def _nearest_sources(source: int, target: int) -> np.ndarray:
    """Pillow's own arithmetic: the first centre at scale/2, then one float64 addition per pixel."""
    scale = source / target
    steps = np.full(target, scale)
    steps[0] = scale * 0.5
    return np.minimum(np.add.accumulate(steps).astype(np.intp), source - 1)


def resize_array(
    image: np.ndarray, size_hw: tuple[int, int], resample: Image.Resampling
) -> np.ndarray:
    """Resize (H, W) or (H, W, C) to `size_hw` channel by channel, keeping the dtype.

    Pillow's "F" mode handles any float data; integer data goes through float32 and back, so
    uint16 keeps its full range. Nearest-neighbour keeps label values exact.
    """
    height, width = size_hw
    if image.shape[:2] == (height, width):
        return image
    if image.ndim == 3:
        return np.stack(
            [resize_array(image[..., c], size_hw, resample) for c in range(image.shape[2])],
            axis=-1,
        )
    if resample == Image.Resampling.NEAREST and image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), resample))
    resized = np.asarray(
        Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), resample)
    )
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        resized = np.clip(np.rint(resized), info.min, info.max)
    return resized.astype(image.dtype)


def read_mask(source: str | Path) -> np.ndarray:
    """Decode a label image (class indices or instance ids) into an (H, W) integer array.

    Palette PNGs give their indices; an RGB mask is accepted only if its channels are equal.
    """
    name = describe(source)
    if _is_tiff(source):
        mask = _read_tiff_labels(source)
    else:
        image = open_image(source)
        if image.mode in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N"):
            mask = np.asarray(image)
        elif image.mode in ("RGB", "RGBA", "LA"):
            channels = np.asarray(image.convert("RGB"))
            if not (np.array_equal(channels[..., 0], channels[..., 1])
                    and np.array_equal(channels[..., 0], channels[..., 2])):
                raise ImageReadError(
                    f"{name} is an RGB mask with different channels; masks must be "
                    "single-channel class-index or instance-id images"
                )
            mask = channels[..., 0]
        else:
            raise ImageReadError(f"{name} has image mode {image.mode}; not a label image")
    if mask.ndim != 2:
        raise ImageReadError(f"{name} has shape {mask.shape}; a mask must be 2-D (H, W)")
    if np.issubdtype(mask.dtype, np.floating) and not np.all(np.equal(np.mod(mask, 1), 0)):
        raise ImageReadError(f"{name} holds non-integer values; masks must hold labels")
    return mask.astype(np.int64)


def _read_tiff_labels(source: str | Path) -> np.ndarray:
    import tifffile

    try:
        mask = tifffile.imread(source, key=0)
    except Exception as error:
        raise ImageReadError(f"{describe(source)} is not a readable TIFF: {error}") from error
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    return mask
