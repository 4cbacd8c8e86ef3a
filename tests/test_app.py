"""The Gradio app: handlers called directly, then the real server through gradio_client."""

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gradio_client.exceptions import AppError
from PIL import Image
from served_app import launched_app

gr = pytest.importorskip("gradio")

REPO = Path(__file__).resolve().parents[1]


def synthetic_png(path: Path, seed: int, size=(120, 90)) -> Path:
    from unet.data.synthetic import SyntheticSpec, make_sample

    sample = make_sample(np.random.default_rng(seed), SyntheticSpec(size=size, dark_fraction=0.0))
    Image.fromarray(sample.image).save(path)
    return path


@pytest.mark.slow
def test_segment_handler_compares_keras_with_int8(app_handlers, tmp_path):
    image = synthetic_png(tmp_path / "a.png", 1)
    view = app_handlers.segment(str(image), timed_runs=3)
    overlay_a, overlay_b, slider, disagreement = view.overlay_a, view.overlay_b, view.slider, view.disagreement
    notes, downloads, summary = view.notes, view.masks, view.summary
    assert np.asarray(Image.open(overlay_a)).shape == np.asarray(Image.open(overlay_b)).shape == (120, 90, 3)
    assert slider == (overlay_a, overlay_b)
    assert [b["name"] for b in summary["backends"]] == ["Keras float32", "LiteRT int8"]
    for backend in summary["backends"]:
        assert backend["p50_ms"] > 0 and backend["runs"] == 3 and backend["warmup_ms"] > 0
    assert 0.9 <= summary["agreement"]["pixel_agreement"] <= 1.0
    assert summary["image_size"] == [90, 120]
    assert Image.open(disagreement).size == (90, 120)
    assert len(downloads) == 2
    mask = np.asarray(Image.open(downloads[1]))
    assert mask.shape == (120, 90) and set(np.unique(mask)) <= {0, 1}
    assert "not Raspberry Pi latency" in notes


@pytest.mark.slow
def test_segment_handler_decodes_awkward_uploads(app_handlers, tmp_path):
    rgba = Image.new("RGBA", (50, 40), (200, 10, 10, 0))
    rgba.save(tmp_path / "rgba.png")
    sixteen = (np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    for name, size in (("rgba.png", [50, 40]), ("sixteen.png", [50, 40]), ("cmyk.jpg", [30, 20])):
        summary = app_handlers.segment(str(tmp_path / name), timed_runs=1).summary
        assert summary["image_size"] == size, name


def test_segment_handler_gives_clear_errors(shipped_handlers, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(gr.Error, match="Cannot read this file"):
        shipped_handlers.segment(str(tmp_path / "broken.png"))
    with pytest.raises(gr.Error, match="No image"):
        shipped_handlers.segment(None)
    with pytest.raises(gr.Error, match="Unknown model 'nope'; choose one of brain-tissue, nuclei, shapes"):
        shipped_handlers.segment(str(tmp_path / "broken.png"), model_name="nope")
    example = str(next((REPO / "assets" / "examples").glob("shapes-*.png")))
    for parameters, message in (({"opacity": "abc"}, "opacity must be a number from 0 to 1, got 'abc'"),
                                ({"threshold": float("nan")}, "threshold must be a number from 0 to 1"),
                                ({"timed_runs": 10**9}, "timed_runs must be a number from 1 to 100"),
                                ({"object_diameter": -3}, "object_diameter must be a number from 0 to 10000")):
        with pytest.raises(gr.Error, match=message):
            shipped_handlers.segment(example, model_name="shapes", **parameters)


def test_request_folders_older_than_their_lifetime_are_removed(tmp_path):
    from unet.serve import handlers as serving
    from unet.serve.compare import ModelCatalog

    handlers = serving.Handlers(ModelCatalog(tmp_path / "no-models"), downloads=tmp_path)
    expired, recent = tmp_path / "expired", tmp_path / "recent"
    for folder in (expired, recent):
        folder.mkdir()
        (folder / "mask.png").write_bytes(b"png")
    long_ago = time.time() - serving.DOWNLOAD_LIFETIME_S - 5
    os.utime(expired, (long_ago, long_ago))
    first = handlers.request_folder()
    assert not expired.exists() and recent.exists() and first.is_dir() and first.parent == tmp_path
    # Within a minute of a pruning pass, the next request does not walk the folder again.
    os.utime(recent, (long_ago, long_ago))
    handlers.request_folder()
    assert recent.exists()


def test_large_uploads_are_downscaled_with_a_note(tmp_path):
    from unet.serve.compare import ModelCatalog
    from unet.serve.handlers import Handlers

    handlers = Handlers(ModelCatalog(tmp_path / "no-models"), downloads=tmp_path, max_pixels=10_000)
    image, notes = handlers.load_upload(str(synthetic_png(tmp_path / "big.png", 2, (400, 300))))
    assert image.shape[0] * image.shape[1] <= 10_000
    assert "downscaled" in notes[0] and "300x400" in notes[0]


@pytest.fixture
def running_app(trained_and_exported, tmp_path_factory):
    folder, _, _ = trained_and_exported
    examples = folder.parent / "examples"
    examples.mkdir(exist_ok=True)
    synthetic_png(examples / "discs-example.png", 77, (96, 128))
    with launched_app(tmp_path_factory.mktemp("app-log") / "app.log", folder.parent) as running:
        yield running


@pytest.mark.slow
def test_launched_app_answers_segment_and_survives_a_corrupt_upload(running_app, tmp_path):
    from gradio_client import handle_file

    url, client, _ = running_app
    image = synthetic_png(tmp_path / "s.png", 3, (100, 80))
    result = client.predict(handle_file(str(image)), api_name="/segment")
    summary = result[-1]
    assert {b["name"] for b in summary["backends"]} == {"Keras float32", "LiteRT int8"}
    assert all(b["p50_ms"] > 0 for b in summary["backends"])
    assert "pixel_agreement" in summary["agreement"]
    overlay = Image.open(result[0])
    assert overlay.size == (80, 100)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image")
    # gradio's Image component refuses undecodable uploads before the handler runs.
    with pytest.raises(AppError, match="cannot identify image file|Cannot read this file"):
        client.predict(handle_file(str(broken)), api_name="/segment")
    again = client.predict(handle_file(str(image)), api_name="/segment")
    assert again[-1]["image_size"] == [80, 100]


@pytest.mark.slow
def test_eight_concurrent_calls_each_get_their_own_result(running_app, tmp_path):
    from gradio_client import Client, handle_file

    url, _, _ = running_app
    sizes = [(60 + 8 * i, 50 + 4 * i) for i in range(8)]
    images = [synthetic_png(tmp_path / f"c{i}.png", 10 + i, size) for i, size in enumerate(sizes)]

    def call(path: Path):
        return Client(url, verbose=False).predict(handle_file(str(path)), api_name="/segment", timed_runs=2)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, images))
    for (height, width), result in zip(sizes, results, strict=True):
        assert result[-1]["image_size"] == [width, height]
        assert Image.open(result[0]).size == (width, height)


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


@pytest.mark.slow
def test_soak_eight_clients_mixed_good_and_bad_uploads(running_app, tmp_path):
    """Several hundred calls: good images answered with their own result, bad ones with an error."""
    from bad_inputs import BAD_INPUTS, write_corpus
    from gradio_client import Client, handle_file

    url, _, pid = running_app
    good = {synthetic_png(tmp_path / f"g{i}.png", 40 + i, (48 + 16 * i, 40 + 8 * i)): (48 + 16 * i, 40 + 8 * i)
            for i in range(6)}
    bad = list(write_corpus(tmp_path / "bad", BAD_INPUTS).values())
    clients, calls_per_client, batches = 8, 40, 8
    outcomes = {"good answered": 0, "bad refused": 0, "wrong result": 0, "server error": 0}
    memory_curve = [round(resident_mb(pid))]

    def client_session(index: int, batch: int) -> dict[str, int]:
        counts = dict.fromkeys(outcomes, 0)
        # Own download folder: clients in one process would otherwise share gradio_client's.
        client = Client(url, verbose=False, download_files=tmp_path / f"downloads-{batch}-{index}")
        good_paths = list(good)
        for call in range(calls_per_client // batches):
            step = batch * clients + index + call
            if step % 5 == 4:
                path = bad[step % len(bad)]
                try:
                    client.predict(handle_file(str(path)), api_name="/segment", timed_runs=1)
                    counts["wrong result"] += 1
                except Exception as error:
                    clear = re.search(r"Cannot read this file|cannot identify image file|empty", str(error))
                    counts["bad refused" if clear else "server error"] += 1
                continue
            path = good_paths[step % len(good_paths)]
            try:
                result = client.predict(handle_file(str(path)), api_name="/segment", timed_runs=1)
            except Exception:
                counts["server error"] += 1
                continue
            height, width = good[path]
            ok = result[-1]["image_size"] == [width, height] and Image.open(result[0]).size == (width, height)
            counts["good answered" if ok else "wrong result"] += 1
        return counts

    started = time.perf_counter()
    for batch in range(batches):
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for counts in pool.map(client_session, range(clients), [batch] * clients):
                for key, value in counts.items():
                    outcomes[key] += value
        memory_curve.append(round(resident_mb(pid)))
    elapsed = time.perf_counter() - started
    total = sum(outcomes.values())
    print(f"soak: {total} calls from {clients} clients in {elapsed:.0f} s: {outcomes}; "
          f"server resident MB after each batch: {memory_curve}")
    assert total == clients * calls_per_client
    assert outcomes["server error"] == 0 and outcomes["wrong result"] == 0
    # Flat after warm-up: the first batch loads the models and fills caches.
    assert memory_curve[-1] <= 1.15 * memory_curve[1] + 30


@pytest.mark.slow
def test_file_routes_do_not_serve_repository_or_system_files(running_app):
    import httpx

    url, _, _ = running_app
    targets = [f"{REPO}/app.py", "/etc/passwd", "../../../../../../etc/passwd", f"{REPO}/assets/../app.py",
               "..%2F..%2F..%2F..%2Fetc%2Fpasswd", f"{REPO}/.git/config"]
    for route in ("gradio_api/file=", "file=", "gradio_api/file/"):
        for target in targets:
            response = httpx.get(f"{url}{route}{target}", follow_redirects=True, timeout=30)
            assert response.status_code in (400, 403, 404, 405), (route, target, response.status_code)
            assert "root:" not in response.text and "import gradio" not in response.text, (route, target)


def test_dockerfile_installs_what_the_readme_and_spaces_use():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "USER " in dockerfile and "EXPOSE 7860" in dockerfile
    assert 'CMD ["python", "app.py"]' in dockerfile and "GRADIO_SERVER_NAME=0.0.0.0" in dockerfile
    readme = (REPO / "README.md").read_text()
    front_matter = readme.split("---")[1]
    requirements = (REPO / "requirements.txt").read_text()
    gradio_pin = next(line for line in requirements.splitlines() if line.startswith("gradio=="))
    assert f"sdk_version: {gradio_pin.split('==')[1]}" in front_matter
    assert "app_file: app.py" in front_matter and "sdk: gradio" in front_matter
    assert 'python_version: "3.11"' in front_matter
    # The browser backend: WASM threads need cross-origin isolation; Spaces sends exactly the
    # headers the app's own middleware sends.
    from unet.serve.browser import ISOLATION_HEADERS

    block = front_matter.split("custom_headers:\n")[1].split("\n")
    spaces_headers = dict(line.strip().split(": ", 1) for line in block if line.startswith("  "))
    assert spaces_headers == {name.decode(): value.decode() for name, value in ISOLATION_HEADERS}
    assert "npm ci" in dockerfile and "COPY web/package.json web/package-lock.json web/" in dockerfile


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
def test_real_browser_runs_an_example_and_shows_the_latency_table(running_app, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make test installs it where apt-get works)")
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _, _ = running_app
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url, wait_until="load")
        page.get_by_text("discs-example").first.click()
        page.get_by_role("button", name="Segment", exact=True).click()
        page.get_by_text("Agreement:").wait_for(timeout=90_000)
        for result in ("#overlay-a img", "#overlay-b img", "#disagreement img"):
            page.locator(result).wait_for(state="visible", timeout=30_000)
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        text = page.locator("body").inner_text()
        browser.close()
    print(f"screenshot: {tmp_path / 'app.png'}")
    import re

    # The latency table: each backend's row carries its p50 and p95 in milliseconds (a number
    # table: a time of exactly 2.00 ms shows as "2").
    for backend in ("Keras float32", "LiteRT int8"):
        assert re.search(backend + r"\s+\d+(\.\d+)?\s+\d+(\.\d+)?\s+\d+ KiB", text), text[-1500:]


@pytest.mark.slow
def test_model_change_shows_the_threshold_for_a_binary_model_and_scale_options_for_instance_models(
        app_handlers, shipped_handlers):
    *_, threshold, diameter, auto_scale = app_handlers.update_backends("discs")
    assert threshold.visible is True and diameter.visible is False and auto_scale.visible is False
    *_, threshold, diameter, auto_scale = shipped_handlers.update_backends("nuclei")
    assert threshold.visible is False and diameter.visible is True and auto_scale.visible is True


def test_segment_handler_scales_both_backends_alike_and_says_so(shipped_handlers):
    example = sorted((REPO / "assets" / "examples").glob("nuclei-*.png"))[0]
    view = shipped_handlers.segment(str(example), model_name="nuclei", timed_runs=1, object_diameter=36)
    scale = view.summary["scale"]
    assert scale["method"] == "given" and scale["object_diameter_px"] == 36
    assert "rescaled" in view.notes
    auto = shipped_handlers.segment(str(example), model_name="nuclei", timed_runs=1, auto_scale=True)
    auto_scale = auto.summary["scale"]
    assert auto_scale["method"] == "auto" and auto_scale["passes"] in (1, 2)
    if auto_scale["passes"] == 1:
        assert f"Auto-scale: objects measure {auto_scale['object_diameter_px']:.1f} px" in auto.notes
    else:
        assert (f"Scale: objects of {auto_scale['object_diameter_px']:.1f} px (auto) were rescaled "
                f"x{auto_scale['factor']:.2f}") in auto.notes
    with pytest.raises(gr.Error, match="not both"):
        shipped_handlers.segment(str(example), model_name="nuclei", object_diameter=20, auto_scale=True)


def test_segment_handler_with_flips_gives_each_backend_what_the_runtime_gives_with_flips(shipped_handlers):
    from unet.runtime.imageio import read_mask
    from unet.runtime.segmenter import Segmenter

    example = sorted((REPO / "assets" / "examples").glob("nuclei-*.png"))[0]
    view = shipped_handlers.segment(str(example), model_name="nuclei", backend_a="LiteRT int8",
                                    backend_b="LiteRT float32", timed_runs=1, flips=True)
    assert view.summary["flips"] is True and "Test-time flips" in view.notes
    runtime = Segmenter.from_path(REPO / "assets" / "nuclei" / "nuclei.int8.tflite")
    with_flips = runtime.segment(str(example), flips=True).segmentation.instance_labels
    without = runtime.segment(str(example)).segmentation.instance_labels
    shown = read_mask(view.masks[0])
    assert np.array_equal(shown, with_flips) and not np.array_equal(shown, without)
