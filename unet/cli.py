"""How every command-line tool ends: a clear one-line error and a non-zero exit, no traceback."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from unet.runtime.errors import UserError
from unet.runtime.scale import AUTO_SCALE_TOLERANCE_TEXT

if TYPE_CHECKING:
    from unet.runtime.metadata import ModelMetadata
    from unet.runtime.segmenter import SegmentOptions

# What a user can fix: their input (UserError and its kinds) or a path that does not exist.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""


_termination_requested = False


def _terminated(signum: int, frame: object) -> None:
    global _termination_requested
    _termination_requested = True
    raise Terminated


def raise_if_terminated() -> None:
    """Raise Terminated if SIGTERM arrived while native code swallowed the first raise.

    A Python callback run from native code (TFLite's calibration calls the representative
    dataset generator) can have its exception caught there; call this before committing work.
    """
    if _termination_requested:
        raise Terminated


def run_cli(main: Callable[[], int]) -> int:
    """Run `main`; user errors print `error: ...` and exit 2 (a traceback with UNET_DEBUG=1).

    SIGTERM is handled like Ctrl-C, so the cleanup that removes staged files runs on both.
    """
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted; nothing was replaced", file=sys.stderr)
        return 130
    except Terminated:
        return _report_terminated()
    except Exception as error:
        if _termination_requested:  # native code swallowed Terminated and raised its own error
            return _report_terminated()
        if not isinstance(error, USER_ERRORS) or os.environ.get("UNET_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


def _report_terminated() -> int:
    print("terminated; nothing was replaced", file=sys.stderr)
    return 143


def add_segment_options(parser: argparse.ArgumentParser) -> None:
    """The options of `Segmenter.segment`, spelled the same way in every command.

    Without a scale option, semantic models resize the image to the model input and instance
    models auto-scale from a first pass at full resolution (`SegmentOptions.default_for`).
    """
    parser.add_argument("--tile", action="store_true", help="full-resolution sliding windows")
    parser.add_argument("--threshold", type=float, default=None, help="binary models only")
    parser.add_argument("--flips", action="store_true",
                        help="average the model's output over the image and its three mirror images "
                        "(four model calls where one would do; bench/results/merges.md measures the gain)")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--resize", action="store_true",
                       help="resize the whole image to the model input, one pass (the default for "
                       "semantic models; instance models auto-scale unless told otherwise)")
    scale.add_argument("--diameter", type=float, default=None, metavar="PX",
                       help="objects' diameter in the image, in pixels: the image is rescaled so "
                       "they match the diameter the model was trained for")
    scale.add_argument("--auto-scale", action="store_true",
                       help="estimate that diameter with a first pass, and segment again at the "
                       f"trained scale when it is off by more than {AUTO_SCALE_TOLERANCE_TEXT}%")


def segment_options(args: argparse.Namespace, metadata: ModelMetadata) -> SegmentOptions:
    """The options given, or the model's defaults when no scale option is."""
    from unet.runtime.segmenter import SegmentOptions

    if not (args.resize or args.tile or args.diameter is not None or args.auto_scale):
        return dataclasses.replace(SegmentOptions.default_for(metadata, args.threshold), flips=args.flips)
    return SegmentOptions(args.threshold, args.tile, args.diameter, args.auto_scale, args.flips)
