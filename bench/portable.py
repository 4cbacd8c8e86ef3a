"""The portable variant against the project's own int8 path, and what its in-graph preprocessing costs.

    python -m bench.portable

For every shipped model and example image, MediaPipe's ImageSegmenter (the reference
consumer of the file's TFLite metadata) runs `NAME.portable.tflite`:
- on the image brought to the model's input size as 8-bit RGB, against the project's LiteRT
  int8 class mask on the same image (what the in-graph preprocessing changes);
- on the full-size image, which MediaPipe resizes itself, against the project's int8 class
  mask from the same image (what MediaPipe's resampling changes on top).
Then the in-graph preprocessing's cost: portable against int8-float-io (its network byte for
byte), interleaved, each at its own input. Writes bench/results/portable.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.results_file import machine, write_results
from unet.runtime.backends import LiteRTBackend, model_call
from unet.runtime.imageio import read_image
from unet.runtime.metadata import ModelMetadata, load_metadata, model_metadata_files
from unet.runtime.preprocess import RGB8, preprocess, to_rgb8
from unet.runtime.segmenter import Segmenter
from unet.runtime.timing import interleaved_latency
from unet.runtime.variants import BROWSER_VARIANT, PORTABLE_VARIANT, variant_path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLES = ASSETS / "examples"
RESULTS = Path(__file__).resolve().parent / "results"


def mediapipe_segment(model_path: Path, rgb: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """MediaPipe Tasks' ImageSegmenter on (H, W, 3) uint8: its category mask and confidence masks.

    MediaPipe resizes the image to the model input itself and brings the masks back to (H, W).
    A 1-channel model's category mask is inverted (0 where the probability is above 0.5, else 255).
    """
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import ImageSegmenter, ImageSegmenterOptions

    options = ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                    output_category_mask=True, output_confidence_masks=True)
    with ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
        category = result.category_mask.numpy_view().reshape(rgb.shape[:2]).copy()
        confidences = [mask.numpy_view().reshape(rgb.shape[:2]).copy() for mask in result.confidence_masks]
    return category, confidences


def class_mask_from_mediapipe(category: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """MediaPipe's category mask as the project's class indices (undoing the 1-channel inversion)."""
    if metadata.output_channels == 1:
        return (category == 0).astype(np.uint8)
    return category.astype(np.uint8)


def examples_of(metadata: ModelMetadata) -> list[Path]:
    return sorted(EXAMPLES.glob(f"{metadata.name}-*.png"))


def at_input_size(image: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """The image as 8-bit RGB at the model's input size: the portable file's tensor, (h, w, 3) uint8."""
    return preprocess(image, metadata, RGB8)[0][0]


def compare_example(model_dir: Path, metadata: ModelMetadata, path: Path) -> dict:
    int8 = Segmenter(LiteRTBackend(variant_path(model_dir / f"{metadata.name}.json", "int8")), metadata)
    portable = variant_path(model_dir / f"{metadata.name}.json", PORTABLE_VARIANT)
    image = read_image(path)
    small = at_input_size(image, metadata)
    category, _ = mediapipe_segment(portable, small)
    project_small = int8.segment(small).segmentation.class_mask
    at_size = np.mean(class_mask_from_mediapipe(category, metadata) == project_small)
    full_category, _ = mediapipe_segment(portable, to_rgb8(image, metadata.normalisation))
    project_full = int8.segment(image).segmentation.class_mask
    full = np.mean(class_mask_from_mediapipe(full_category, metadata) == project_full)
    return {"model": metadata.name, "image": path.name, "size": list(image.shape[:2]),
            "agreement_at_input_size": float(at_size), "agreement_full_size": float(full)}


def preprocessing_cost(model_dir: Path, metadata: ModelMetadata, runs: int) -> dict:
    """p50 of portable and int8-float-io on 2 threads, interleaved, on the first example image."""
    network = LiteRTBackend(variant_path(model_dir / f"{metadata.name}.json", BROWSER_VARIANT))
    portable = LiteRTBackend(variant_path(model_dir / f"{metadata.name}.json", PORTABLE_VARIANT))
    image = read_image(examples_of(metadata)[0])
    assert portable.input_encoding == RGB8
    runners = {backend.name: model_call(backend, image, metadata) for backend in (network, portable)}
    latency = interleaved_latency(runners, None, runs)
    network_ms, portable_ms = latency[network.name]["p50_ms"], latency[portable.name]["p50_ms"]
    return {"model": metadata.name, "input_size": list(metadata.input_size), "network_p50_ms": network_ms,
            "portable_p50_ms": portable_ms, "preprocessing_share": (portable_ms - network_ms) / network_ms}


def main(argv: list[str] | None = None) -> int:
    runs = int(argv[0]) if argv else 200
    rows, costs = [], []
    for metadata_path in model_metadata_files(ASSETS):
        metadata = load_metadata(metadata_path)
        rows += [compare_example(metadata_path.parent, metadata, path) for path in examples_of(metadata)]
        costs.append(preprocessing_cost(metadata_path.parent, metadata, runs))
    lines = ["# The portable variant", "", f"Machine: {machine()}", "",
             "MediaPipe's ImageSegmenter on `NAME.portable.tflite` against the project's LiteRT int8 "
             "class mask (pixel agreement):", "",
             "| model | image | size | given at the input size | given at full size (MediaPipe resizes) |",
             "|---|---|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['image']} | {r['size'][1]}x{r['size'][0]} | "
              f"{r['agreement_at_input_size']:.2%} | {r['agreement_full_size']:.2%} |" for r in rows]
    lines += ["", f"In-graph preprocessing: portable against {BROWSER_VARIANT} (the same network), "
              f"2 threads, {runs} interleaved calls each, p50:", "",
              "| model | input | int8-float-io | portable | preprocessing / model call |",
              "|---|---|---:|---:|---:|"]
    lines += [f"| {c['model']} | {c['input_size'][1]}x{c['input_size'][0]} | {c['network_p50_ms']:.2f} ms | "
              f"{c['portable_p50_ms']:.2f} ms | {c['preprocessing_share']:.1%} |" for c in costs]
    markdown = "\n".join(lines) + "\n"
    results = {"machine": machine(), "agreement": rows, "preprocessing": costs}
    write_results(RESULTS / "portable.json", results, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
