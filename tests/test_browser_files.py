"""What the app serves the browser backend, and how it reads the browser's results back."""

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet.runtime.errors import UserError
from unet.serve.browser import MODULE_FILES, device_segmentation, module_sources

REPO = Path(__file__).resolve().parents[1]


def test_without_node_modules_the_page_takes_the_pinned_versions_from_a_cdn(tmp_path):
    shutil.copy(REPO / "web" / "package-lock.json", tmp_path)
    lock = json.loads((tmp_path / "package-lock.json").read_text())["packages"]
    sources = module_sources(tmp_path)
    assert sources["source"] == "cdn"
    for name, file in MODULE_FILES.items():
        version = lock[f"node_modules/{name}"]["version"]
        assert sources["imports"][name] == f"https://cdn.jsdelivr.net/npm/{name}@{version}/{file}"
    assert sources["wasm"].endswith(f"@litertjs/core@{sources['version']}/wasm/")


@pytest.mark.skipif(not (REPO / "web" / "node_modules").is_dir(), reason="npm ci has not run in web/")
def test_with_node_modules_every_module_is_served_from_this_origin():
    sources = module_sources(REPO / "web")
    assert sources["source"] == "local"
    for name, url in sources["imports"].items():
        assert url.startswith("/unet-edge/npm/")
        assert (REPO / "web" / "node_modules" / url.removeprefix("/unet-edge/npm/")).is_file(), name


def png_data_url(values: np.ndarray) -> str:
    rgba = np.zeros((*values.shape, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 3] = values & 255, values >> 8, 255
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_device_masks_come_back_exactly_with_ids_above_255():
    labels = np.arange(12, dtype=np.int32).reshape(3, 4) * 97
    classes = (labels % 3).astype(np.uint8)
    device = device_segmentation({"mask_png": png_data_url(classes), "instances_png": png_data_url(labels),
                                  "backend": "LiteRT.js int8 (WASM, 2 threads)", "threads": 2, "cores": 8,
                                  "p50_ms": 3.5, "p95_ms": 4.0, "instances": 11}, (3, 4), 3)
    assert np.array_equal(device.class_mask, classes) and np.array_equal(device.instance_labels, labels)
    assert device.backend == "this device: LiteRT.js int8 (WASM, 2 threads) [2 of 8 cores]"


@pytest.mark.parametrize("payload, message", [
    ({}, "sent no on-device result"),
    ("a string", "sent no on-device result"),
    ({"mask_png": "data:image/jpeg;base64,AAAA"}, "not a PNG data URL"),
    ({"mask_png": "data:image/png;base64,AAAA"}, "cannot decode the browser's class mask: not a PNG"),
    ({"mask_png": png_data_url(np.zeros((5, 4), np.int32))}, "class mask is 4x5, the image 4x3"),
    ({"mask_png": png_data_url(np.full((3, 4), 3, np.int32))}, "class mask holds 3, above the largest possible 2"),
    ({"mask_png": png_data_url(np.zeros((3, 4), np.int32)), "threads": 2.5}, "threads is not a whole number"),
    ({"mask_png": png_data_url(np.zeros((3, 4), np.int32)), "p50_ms": "abc"}, "p50_ms is not a number"),
    ({"mask_png": png_data_url(np.zeros((3, 4), np.int32)), "p50_ms": True}, "p50_ms is not a number"),
    ({"mask_png": png_data_url(np.zeros((3, 4), np.int32)), "instances": -1}, "instances is not a whole number"),
    ({"mask_png": png_data_url(np.zeros((3, 4), np.int32)), "model": ["x"]}, "model is not a short text"),
    ({"mask_png": png_data_url(np.zeros((3, 4), np.int32)), "x": 1}, "fields this server does not know: x"),
    ({"mask_png": png_data_url(np.zeros((3, 4), np.int32)), "width": 5}, "width is not a whole number from 4 to 4"),
    ({"mask_png": "data:image/png;base64," + "A" * 100_000}, "class mask is 0.1 MB, more than a 4x3 mask"),
])
def test_bad_device_results_are_named_in_one_line(payload, message):
    with pytest.raises(UserError, match=message) as refused:
        device_segmentation(payload, (3, 4), 3)
    assert "\n" not in str(refused.value)
