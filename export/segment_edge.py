"""Segment images on a Raspberry Pi (or anywhere) with a .tflite model and its sidecar JSON.

    python export/segment_edge.py nuclei.int8.tflite photos/ --out results/ --threads 4

Needs only numpy, pillow and ai-edge-litert (or tflite-runtime); scipy and scikit-image
for instance models. TensorFlow is never imported. For each image it writes
`<stem>_mask.png` (class indices with the class colours as palette), `<stem>_overlay.png`,
and for instance models `<stem>_instances.png` (uint16 ids); it prints per-image latency
and a p50/p95 summary, and writes `summary.json` (per image: timings, instance count, and the
scale used).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet.cli import add_segment_options, run_cli, segment_options
from unet.runtime.edge import expand_inputs, segment_files
from unet.runtime.segmenter import Segmenter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segment_edge.py", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a .tflite file with its sidecar .json")
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
