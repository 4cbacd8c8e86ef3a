"""Segment images with a .tflite model on a Raspberry Pi (or anywhere), without TensorFlow.

    python -m unet.segment nuclei.int8.tflite photos/ --out results/ --threads 4

Run it from the repository's folder (a plain copy is enough) after `pip install -r
requirements-edge.txt`: numpy, pillow and ai-edge-litert (or tflite-runtime); scipy and
scikit-image for instance models. The model's metadata comes from inside the `.tflite`, or from
a sidecar JSON beside it, which wins. For each image it writes `<stem>_mask.png` (class indices
with the class colours as palette), `<stem>_overlay.png`, and for instance models
`<stem>_instances.png` (uint16 ids); it prints per-image latency and a p50/p95 summary, and
writes `summary.json` (per image: timings, instance count, and the scale used).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from unet.cli import add_segment_options, run_cli, segment_options
from unet.runtime.atomic import atomic_write_text
from unet.runtime.imageio import ImageReadError, image_files, read_image
from unet.runtime.overlay import mask_image, save_instance_labels, save_png, segmentation_overlay
from unet.runtime.segmenter import Segmenter, SegmentOptions, SegmentResult
from unet.runtime.timing import percentiles_ms

COMMAND = "python -m unet.segment nuclei.int8.tflite photos/ --out results/ --threads 4"


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders expand to their image files, sorted."""
    files = []
    for path in inputs:
        files += image_files(path) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, inputs))}")
    return files


@dataclass
class EdgeRun:
    """Per-image model and total latencies of a run, what was found, and how many files could not be read."""

    model_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    unreadable: int = 0

    def to_dict(self, options: SegmentOptions) -> dict:
        return {"options": options.to_kwargs(), "images": self.images,
                "model": percentiles_ms(self.model_ms) if self.model_ms else None,
                "total": percentiles_ms(self.total_ms) if self.total_ms else None,
                "unreadable": self.unreadable}

    def summary(self) -> str:
        model, total = percentiles_ms(self.model_ms), percentiles_ms(self.total_ms)
        return (f"{len(self.model_ms)} images: model p50 {model['p50_ms']:.1f} ms "
                f"p95 {model['p95_ms']:.1f} ms; total p50 {total['p50_ms']:.1f} ms "
                f"p95 {total['p95_ms']:.1f} ms")


def write_outputs(image, result: SegmentResult, segmenter: Segmenter, out: Path, stem: str) -> str:
    """`<stem>_mask.png`, `<stem>_overlay.png` and, for instance models, `<stem>_instances.png`.

    Returns a note on what was found (the instance count), for the per-image line.
    """
    colours = segmenter.metadata.class_colours
    segmentation = result.segmentation
    save_png(mask_image(segmentation.class_mask, colours), out / f"{stem}_mask.png")
    note = ""
    if segmentation.instance_labels is not None:
        save_instance_labels(segmentation.instance_labels, out / f"{stem}_instances.png")
        note = f", {segmentation.instance_count} instances"
    save_png(segmentation_overlay(image, segmentation, colours), out / f"{stem}_overlay.png")
    return note


def segment_files(
    segmenter: Segmenter, files: list[Path], out: Path, options: SegmentOptions = SegmentOptions()  # noqa: B008
) -> EdgeRun:
    """Segment each file, write its outputs and `summary.json` into `out`, print each latency.

    Unreadable files are skipped with a message and counted.
    """
    out.mkdir(parents=True, exist_ok=True)
    run = EdgeRun()
    for path in files:
        try:
            image = read_image(path)
        except ImageReadError as error:
            print(f"skipped: {error}", file=sys.stderr)
            run.unreadable += 1
            continue
        result = segmenter.segment(image, **options.to_kwargs())
        note = write_outputs(image, result, segmenter, out, path.stem)
        total = sum(result.timings_ms.values())
        run.model_ms.append(result.timings_ms["model"])
        run.total_ms.append(total)
        run.images.append({"file": path.name, "timings_ms": result.timings_ms,
                           "instance_count": result.segmentation.instance_count,
                           "scale": result.scale.to_dict() if result.scale else None})
        if options.auto_scale and result.scale is not None:
            passes = result.scale.passes
            note += f", scale x{result.scale.factor:.2f} ({passes} pass{'es' if passes > 1 else ''})"
        print(f"{path.name}: model {result.timings_ms['model']:.1f} ms, total {total:.1f} ms{note}")
    atomic_write_text(out / "summary.json", json.dumps(run.to_dict(options), indent=2) + "\n")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.segment", description=__doc__.split("\n")[0],
                                     epilog=f"example, from the repository's folder: {COMMAND}")
    parser.add_argument("model", type=Path, help="a .tflite file (metadata inside it, or a sidecar .json)")
    parser.add_argument("inputs", type=Path, nargs="+", help="images or folders of images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    add_segment_options(parser)
    args = parser.parse_args(argv)

    segmenter = Segmenter.from_path(args.model, args.threads)
    metadata = segmenter.metadata
    files = expand_inputs(args.inputs)
    print(f"{args.model.name}: {metadata.mode}, classes {', '.join(metadata.class_names)}, "
          f"{segmenter.backend.num_threads} threads")
    run = segment_files(segmenter, files, args.out, segment_options(args, metadata))
    if run.model_ms:
        print(f"{run.summary()}; results in {args.out}")
    return 1 if run.unreadable and not run.model_ms else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
