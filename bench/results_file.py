"""Where every benchmark writes its numbers: bench/results/NAME.json, and NAME.md beside it."""

from __future__ import annotations

import json
from pathlib import Path

from unet.runtime.atomic import atomic_write_text

VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp")


def machine() -> str:
    """The CPU a number was measured on: architecture, cores and the vector flags int8 depends on."""
    import os
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    flags = sorted(set(cpuinfo.read_text().split()) & set(VECTOR_FLAGS)) if cpuinfo.is_file() else []
    return f"{platform.machine()}, {os.cpu_count()} cores, flags {' '.join(flags) or 'unknown'}"


def write_results(out: Path, results: dict, markdown: str | None = None) -> None:
    """The results as JSON at `out` and, if given, the Markdown summary beside it, each atomically."""
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    written = [out]
    if markdown is not None:
        atomic_write_text(out.with_suffix(".md"), markdown)
        written.append(out.with_suffix(".md"))
    print("wrote " + " and ".join(map(str, written)))
