"""How every command-line tool ends: a clear one-line error and a non-zero exit, no traceback."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from unet.runtime.errors import UserError

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
