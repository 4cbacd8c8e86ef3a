"""Tune instance post-processing on the training split: `python -m unet.tune MODEL.keras`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet.cli import run_cli
from unet.training.tuning import save_marker_distance, tune_marker_distance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.tune", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--candidates", default="0,4,6,8,10", help="comma-separated distances in pixels")
    parser.add_argument("--limit", type=int, default=None, help="at most this many training images")
    args = parser.parse_args(argv)
    candidates = [int(v) for v in args.candidates.split(",")]
    best, _ = tune_marker_distance(args.model, candidates, args.limit)
    path = save_marker_distance(args.model, best)
    print(f"chose marker_min_distance {best}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
