"""Segment images on a Raspberry Pi (or anywhere) with a .tflite model and its sidecar JSON.

    python export/segment_edge.py nuclei.int8.tflite photos/ --out results/ --threads 4

Needs only numpy, pillow and ai-edge-litert (or tflite-runtime); scipy and scikit-image
for instance models. TensorFlow is never imported. For each image it writes
`<stem>_mask.png` (class indices with the class colours as palette), `<stem>_overlay.png`,
and for instance models `<stem>_instances.png` (uint16 ids); it prints per-image latency
and a p50/p95 summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from unet.cli import run_cli  # noqa: E402
from unet.imageio import IMAGE_SUFFIXES, ImageReadError, read_image  # noqa: E402
from unet.overlay import mask_image, save_instance_labels, save_png, segmentation_overlay  # noqa: E402
from unet.runtime import Segmenter, percentiles_ms  # noqa: E402


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders expand to their image files, sorted."""
    files = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, inputs))}")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segment_edge.py", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a .tflite file with its sidecar .json")
    parser.add_argument("inputs", type=Path, nargs="+", help="images or folders of images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--tile", action="store_true", help="full-resolution sliding windows")
    parser.add_argument("--threshold", type=float, default=None, help="binary models only")
    args = parser.parse_args(argv)

    segmenter = Segmenter.from_path(args.model, args.threads)
    metadata = segmenter.metadata
    files = expand_inputs(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    model_latencies, total_latencies, failures = [], [], 0
    print(f"{args.model.name}: {metadata.mode}, classes {', '.join(metadata.class_names)}, "
          f"{segmenter.backend.num_threads} threads")
    for path in files:
        try:
            image = read_image(path)
        except ImageReadError as error:
            print(f"skipped: {error}", file=sys.stderr)
            failures += 1
            continue
        result = segmenter.segment(image, threshold=args.threshold, tile=args.tile)
        segmentation = result.segmentation
        mask = mask_image(segmentation.class_mask, metadata.class_colours)
        save_png(mask, args.out / f"{path.stem}_mask.png")
        counted = ""
        if segmentation.instance_labels is not None:
            save_instance_labels(segmentation.instance_labels, args.out / f"{path.stem}_instances.png")
            counted = f", {segmentation.instance_count} instances"
        overlay = segmentation_overlay(image, segmentation, metadata.class_colours)
        save_png(overlay, args.out / f"{path.stem}_overlay.png")
        total = sum(result.timings_ms.values())
        model_latencies.append(result.timings_ms["model"])
        total_latencies.append(total)
        print(f"{path.name}: model {result.timings_ms['model']:.1f} ms, total {total:.1f} ms{counted}")
    if model_latencies:
        model_summary, total_summary = percentiles_ms(model_latencies), percentiles_ms(total_latencies)
        print(f"{len(model_latencies)} images: model p50 {model_summary['p50_ms']:.1f} ms "
              f"p95 {model_summary['p95_ms']:.1f} ms; total p50 {total_summary['p50_ms']:.1f} ms "
              f"p95 {total_summary['p95_ms']:.1f} ms; results in {args.out}")
    return 1 if failures and not model_latencies else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
