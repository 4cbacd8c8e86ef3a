"""Train a U-Net: `python -m unet.train --synthetic --epochs 2 --out /tmp/x`.

Writes to --out: NAME.keras (best checkpoint by validation mean IoU), NAME.json (metadata),
history.csv, curves.png and evaluation.json; an interrupted run replaces nothing.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from unet.cli import run_cli
from unet.data.synthetic import SHAPE_CLASSES, SyntheticSpec
from unet.training.loop import STRATEGIES
from unet.training.trainer import ARCHITECTURES, TrainConfig, train


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    defaults = TrainConfig(out=Path("runs/model"))
    synthetic = SyntheticSpec()
    parser = argparse.ArgumentParser(prog="python -m unet.train", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, nargs="+",
                        help="one or more folders with images/ and masks/ (trained on together)")
    source.add_argument("--synthetic", action="store_true", help="train on generated shapes")
    parser.add_argument("--synthetic-count", type=int, default=synthetic.count)
    parser.add_argument("--synthetic-shapes", default=",".join(synthetic.shapes),
                        help=f"comma-separated from {','.join(SHAPE_CLASSES)} (one shape = binary)")
    parser.add_argument("--synthetic-dark-fraction", type=float, default=synthetic.dark_fraction,
                        help="share of synthetic images with objects darker than the background")
    parser.add_argument("--synthetic-touching", type=float, default=synthetic.touching,
                        help="chance that a synthetic object touches one placed before it")
    parser.add_argument("--mode", choices=("semantic", "instance"), default=defaults.mode)
    parser.add_argument("--arch", dest="architecture", choices=ARCHITECTURES, default=defaults.architecture)
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="model input channels (default: from the data)")
    parser.add_argument("--class-names", default=None,
                        help="comma-separated, background first; masks must hold 0..K-1")
    parser.add_argument("--depth", type=int, default=defaults.depth)
    parser.add_argument("--base-filters", type=int, default=defaults.base_filters)
    parser.add_argument("--max-filters", type=int, default=defaults.max_filters,
                        help="cap on any level's filters (default: none, they double down to the bottleneck)")
    parser.add_argument("--no-batch-norm", dest="batch_norm", action="store_false")
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--upsampling", choices=("transpose", "resize"), default=defaults.upsampling)
    parser.add_argument("--loss", choices=("ce", "dice", "ce_dice"), default=defaults.loss)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--samples-per-epoch", type=int, default=None)
    parser.add_argument("--lr", dest="learning_rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--val-fraction", dest="validation_fraction", type=float,
                        default=defaults.validation_fraction)
    parser.add_argument("--val-prefix", dest="validation_prefix", default=None,
                        help="samples whose name starts with this are the validation set "
                        "(instead of a random split), e.g. a separate slab of slices")
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--name", default=defaults.name, help="file stem of the model")
    parser.add_argument("--description", default="")
    parser.add_argument("--boundary-width", type=int, default=defaults.boundary_width)
    parser.add_argument("--min-instance-size", type=int, default=defaults.min_instance_size)
    parser.add_argument("--marker-min-distance", type=int, default=defaults.marker_min_distance,
                        help="instance mode: seed objects at distance-transform peaks this far "
                        "apart (0: one seed per interior region)")
    parser.add_argument("--core-fraction", type=float, default=defaults.core_fraction, metavar="F",
                        help="instance mode: add a 4th class, each object's core (its pixels at "
                        "least F of its largest edge distance inside), to seed the watershed (0: off)")
    parser.add_argument("--normalisation", choices=("percentile", "unit"), default=defaults.normalisation)
    parser.add_argument("--scale-range", type=float, nargs=2, default=defaults.scale_range,
                        metavar=("MIN", "MAX"),
                        help="random rescaling of training images before cropping; cover the "
                        "scale at which inference will see objects")
    parser.add_argument("--instance-brightness", type=float, default=defaults.instance_brightness,
                        metavar="SPREAD",
                        help="instance mode: serve half the images with each object's brightness "
                        "scaled on its own, down to 1/SPREAD (1: off)")
    parser.add_argument("--border-weight", type=float, default=defaults.border_weight, metavar="W0",
                        help="weight the cross-entropy with the U-Net paper's map, w_c + W0 * "
                        "exp(-(d1+d2)^2 / 2 sigma^2), large where touching objects meet (paper: 10; 0: off)")
    parser.add_argument("--border-sigma", type=float, default=defaults.border_sigma, metavar="PX",
                        help="sigma of the border weight, in pixels of the training images "
                        "(default %(default)s)")
    parser.add_argument("--init-weights", type=Path, default=None, metavar="MODEL.keras",
                        help="start from this model's weights (same architecture), e.g. to fine-tune a "
                        "shipped model with another loss; recorded in the metadata")
    parser.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy,
                        help="none: one device; mirrored: every GPU (or logical CPU) of this machine; "
                        "multiworker: the hosts TF_CONFIG names (TensorFlow's MultiWorkerMirroredStrategy): "
                        "start the same command on each host with its own TF_CONFIG; the global "
                        "--batch-size is split between them (README, Training across hosts)")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, metavar="STEPS",
                        help="save the training state every STEPS steps as well as at every epoch end "
                        "(0: epoch ends only); a run started again with the same command resumes from "
                        "the last one (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quiet", dest="verbose", action="store_const", const=2, default=1)
    args = vars(parser.parse_args(argv))
    synthetic_options = {key: args.pop(f"synthetic_{key}") for key in ("count", "shapes", "dark_fraction",
                                                                       "touching")}
    if args.pop("synthetic"):
        synthetic_options["shapes"] = tuple(s.strip() for s in synthetic_options["shapes"].split(",")
                                            if s.strip())
        args["synthetic"] = SyntheticSpec(seed=args["seed"], size=(args["input_size"],) * 2,
                                          channels=args["channels"] or 1, **synthetic_options)
    if args["class_names"]:
        args["class_names"] = [s.strip() for s in args["class_names"].split(",")]
    return TrainConfig(**args)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    arguments = sys.argv[1:] if argv is None else argv
    config.extra_training_info["command"] = "python -m unet.train " + shlex.join(arguments)
    evaluation = train(config)
    if not evaluation:
        print("worker finished; the chief wrote the model")
        return 0
    print(json.dumps({k: evaluation[k] for k in ("mean_iou", "pixel_accuracy")}, indent=2))
    print(f"wrote {config.out}/{config.name}.keras and its metadata, history, curves, evaluation")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
