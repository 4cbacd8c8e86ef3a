"""Folder fingerprints for tests that check a failed or interrupted run left files untouched."""

import hashlib
from pathlib import Path


def file_digests(folder: Path, include_hidden: bool = True) -> dict[str, str]:
    """{name: sha256} of the files directly in `folder`; hidden (dot) files only if asked."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir())
            if path.is_file() and (include_hidden or not path.name.startswith("."))}
