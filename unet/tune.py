"""Tune instance post-processing on the training split: `python -m unet.tune MODEL.keras`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from unet.cli import run_cli
from unet.training.tuning import at_grid_edge, save_instance_params, tune_instance_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.tune", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--candidates", default="0,3,4,5,7",
                        help="comma-separated marker distances, in model-input pixels (0: one seed "
                        "per seed region)")
    parser.add_argument("--interior-thresholds", default="0.5,0.65,0.8",
                        help="comma-separated seed probability thresholds (the core's in a 4-class "
                        "model, else the interior's)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many training images")
    args = parser.parse_args(argv)
    distances = [int(v) for v in args.candidates.split(",")]
    thresholds = [float(v) for v in args.interior_thresholds.split(",")]
    best, _ = tune_instance_params(args.model, distances, thresholds, args.limit)
    for warning in at_grid_edge(best, distances, thresholds):
        print(f"warning: {warning}", file=sys.stderr)
    arguments = sys.argv[1:] if argv is None else argv
    path = save_instance_params(args.model, best, "python -m unet.tune " + shlex.join(arguments))
    print(f"chose marker_min_distance {best.marker_min_distance}, interior_threshold "
          f"{best.interior_threshold}, keep_unseeded {best.keep_unseeded}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
