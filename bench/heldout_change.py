"""How much a model moved the held-out rows against an earlier one, with each row's noise.

    python -m bench.heldout_change BEFORE.json AFTER.json [--variant int8] [--rows cells3d,crowded]
        [--before-spread-rule]

For reporting a change that was already chosen on development data, never for choosing one:
the rows are `bench.generalisation`'s held-out sources, and a model picked on them would no
longer be judged on data it never saw. Both models go through the default path
(`SegmentOptions.default_for`) on the same images, and each row gives the change in F1@0.5 with
a paired bootstrap 95% interval over its images (`bench.model_selection.paired_bootstrap`).
The rows hold 10-11 images, so the interval says how much of a change the images alone can
make. BBBC007 is left out: each model holds out its own validation images, so there is nothing
to pair.

`--before-spread-rule` runs the default path as it was before auto-scale learned to magnify
images whose nuclei spread widely in size (commit e7709f4): `spread_magnification` held at 1.
It separates what a model changed from what that runtime rule changed.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

from bench.generalisation import BBBC007_ROW, Source, evaluation_sources
from bench.model_selection import counts_at_half, f1_from_counts, paired_bootstrap, segment_default
from unet.cli import run_cli
from unet.runtime.segmenter import Segmenter
from unet.runtime.variants import variant_path


def row_changes(sources: list[Source], before: Segmenter, after: Segmenter) -> list[dict]:
    """Per source: F1@0.5 of both models on its images, the change, its paired interval, and
    how many images got better and worse."""
    rows = []
    for source in sources:
        counts = [counts_at_half(source.instance_labels, segment_default(model, source.images))
                  for model in (before, after)]
        change, low, high = paired_bootstrap([(counts[0], counts[1])])
        per_image = f1_from_counts(counts[1][:, None]) - f1_from_counts(counts[0][:, None])
        rows.append({"source": source.name, "images": len(source.images),
                     "before": float(f1_from_counts(counts[0])), "after": float(f1_from_counts(counts[1])),
                     "change": change, "interval": (low, high),
                     "images_better": int((per_image > 0).sum()), "images_worse": int((per_image < 0).sum())})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| row | images | before | after | change (95% interval) | images better / worse |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['source']} | {r['images']} | {r['before']:.3f} | {r['after']:.3f} | "
              f"{r['change']:+.3f} ({r['interval'][0]:+.3f} to {r['interval'][1]:+.3f}) | "
              f"{r['images_better']} / {r['images_worse']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heldout_change",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="the earlier model's metadata JSON")
    parser.add_argument("after", type=Path, help="the later model's metadata JSON (its sources are used)")
    parser.add_argument("--variant", default="int8", help="which file of each model to run (default int8)")
    parser.add_argument("--rows", default="",
                        help="comma-separated parts of row names to keep (default: all)")
    parser.add_argument("--before-spread-rule", action="store_true",
                        help="hold auto-scale's spread magnification at 1, as before commit e7709f4")
    args = parser.parse_args(argv)
    before, after = (Segmenter.from_path(variant_path(path, args.variant))
                     for path in (args.before, args.after))
    wanted = [part for part in args.rows.split(",") if part]
    sources = [s for s in evaluation_sources(after.metadata) if s.name != BBBC007_ROW
               and (not wanted or any(part in s.name for part in wanted))]
    spread_rule = (mock.patch("unet.runtime.segmenter.spread_magnification", return_value=1.0)
                   if args.before_spread_rule else nullcontext())
    with spread_rule:
        rows = row_changes(sources, before, after)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
