"""Decoding: every supported format, bit depth and colour mode becomes the expected array."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet.runtime.imageio import ImageReadError, read_image, read_mask


def _png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kwargs.pop("format", "PNG"), **kwargs)
    return buffer.getvalue()


def test_8bit_grayscale_png(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    decoded = read_image(tmp_path / "g.png")
    assert decoded.dtype == np.uint8 and decoded.shape == (3, 4)
    np.testing.assert_array_equal(decoded, pixels)


def test_16bit_png_keeps_its_range(tmp_path):
    pixels = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "d.png")
    decoded = read_image(tmp_path / "d.png")
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, pixels)


def test_rgba_drops_alpha_and_palette_becomes_rgb():
    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 0))
    assert read_image(_png_bytes(rgba)).tolist() == [[[10, 20, 30], [10, 20, 30]]]
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([200, 100, 50] + [0] * 765)
    assert read_image(_png_bytes(palette))[0, 0].tolist() == [200, 100, 50]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red
    decoded = read_image(_png_bytes(cmyk, format="JPEG", quality=95))
    assert decoded.shape == (4, 4, 3)
    assert decoded[0, 0, 0] > 200 and decoded[0, 0, 1] < 60


def test_exif_orientation_is_applied():
    image = Image.new("L", (4, 2), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = read_image(_png_bytes(image, format="JPEG", exif=exif.tobytes()))
    assert decoded.shape == (4, 2)


def test_tiff_16bit_float_and_multipage(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.full((5, 6), 4000, dtype=np.uint16), compression="zlib")
    assert read_image(tmp_path / "a.tif").dtype == np.uint16
    tifffile.imwrite(tmp_path / "f.tif", np.full((5, 6), 0.5, dtype=np.float32))
    assert read_image(tmp_path / "f.tif").dtype == np.float32
    tifffile.imwrite(tmp_path / "m.tif", np.stack([np.zeros((5, 6)), np.ones((5, 6))]).astype(np.uint8))
    assert read_image(tmp_path / "m.tif").shape == (5, 6)


def test_max_pixels_downscales_keeping_aspect():
    decoded = read_image(np.zeros((400, 200), dtype=np.uint8), max_pixels=20_000)
    assert decoded.shape == (200, 100)


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00", "not a readable image"), (b"hello world", "not a readable")],
)
def test_unreadable_input_names_the_problem(payload, message):
    with pytest.raises(ImageReadError, match=message):
        read_image(payload)


def test_missing_and_empty_files_are_named(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="zero.png is an empty file"):
        read_image(tmp_path / "zero.png")


def test_masks_palette_indices_and_rgb_refusal(tmp_path):
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").tolist() == [[0, 1], [2, 1]]
    Image.new("RGB", (2, 2), (255, 0, 0)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError, match="RGB mask with different channels"):
        read_mask(tmp_path / "rgb.png")


@pytest.mark.parametrize("source", [(256, 256), (91, 91), (7, 5), (300, 17)])
def test_nearest_resize_by_lookup_picks_the_pixels_pillow_picks(source):
    from PIL import Image

    from unet.runtime.imageio import resize_array, resize_nearest

    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, source).astype(np.uint8)
    for height in range(1, 900, 37):
        target = (height, height + 13)
        assert np.array_equal(resize_nearest(array, target),
                              resize_array(array, target, Image.Resampling.NEAREST)), target
    labels = rng.integers(0, 2**31 - 1, source).astype(np.int32)
    assert set(np.unique(resize_nearest(labels, (512, 512)))) <= set(np.unique(labels))
