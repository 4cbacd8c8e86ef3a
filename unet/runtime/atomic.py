"""Write files so that a crash never leaves a half-written one: temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(final_path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; on success rename it into place.

    The temporary file keeps the final suffix so that writers that check it (Keras wants
    `.keras`, matplotlib picks the format from it) accept it. On error it is removed and the
    previous file at `final_path`, if any, is untouched.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{final_path.stem}.", suffix=f".tmp{final_path.suffix}", dir=final_path.parent
    )
    os.close(handle)
    temporary_path = Path(temporary_name)
    os.chmod(temporary_path, 0o666 & ~_UMASK)
    try:
        yield temporary_path
        os.replace(temporary_path, final_path)
    finally:
        temporary_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary_path:
        temporary_path.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
