"""Evaluate a model (.keras or .tflite) on a folder dataset: `python -m unet.evaluate MODEL --data DIR`.

Images are segmented at their original size through the shared runtime, exactly as a user
would run them, then scored against their masks. Prints a per-class table and writes JSON
to --out (default: MODEL_FILE_NAME.evaluation.json in the working folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unet.cli import add_segment_options, run_cli, segment_options
from unet.data.splits import labelled_folder, recorded_split
from unet.runtime.atomic import atomic_write_text
from unet.runtime.errors import UserError
from unet.runtime.evaluation import evaluate_samples, format_table
from unet.runtime.segmenter import Segmenter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help=".keras or .tflite file with its sidecar JSON")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with images/ and masks/ (default: the validation split "
                        "recorded at training)")
    add_segment_options(parser)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default: MODEL_FILE_NAME.evaluation.json in the working folder)")
    args = parser.parse_args(argv)
    segmenter = Segmenter.from_path(args.model, args.threads)
    if args.data is not None:
        labelled = labelled_folder(segmenter.metadata, args.data)
    else:
        labelled = recorded_split(segmenter.metadata, "validation")
        if labelled is None:
            raise UserError(f"{args.model} records no reproducible validation split; give --data DIR")
    options = segment_options(args, segmenter.metadata)
    result = evaluate_samples(
        segmenter, labelled.images, labelled.targets, labelled.instance_labels, options, progress=True
    )
    result["options"] = options.to_kwargs()
    result["model"] = args.model.name
    result["data"] = str(args.data) if args.data else "recorded validation split"
    print(format_table(result))
    out = args.out or Path(args.model.name + ".evaluation.json")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
