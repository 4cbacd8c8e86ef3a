"""Where every benchmark writes its numbers: bench/results/NAME.json, and NAME.md beside it."""

from __future__ import annotations

import json
from pathlib import Path

from unet.runtime.atomic import atomic_write_text

VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                "amx_bf16", "asimd", "asimddp")


def machine() -> str:
    """The CPU a number was measured on: its model, cores, and the vector and matrix flags int8 uses.

    AMX shows as the amx_tile/amx_int8 flags: the kernel offers it, and XNNPACK's int8 kernels
    may use it (on one AMX host native int8 ran slower than float32).
    """
    import os
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    flags = sorted(set(text.split()) & set(VECTOR_FLAGS))
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    model = names[0] if names else platform.processor() or "unknown CPU"
    amx = "AMX present" if "amx_int8" in flags else "no AMX"
    listed = " ".join(flags) or "unknown"
    return f"{model}, {platform.machine()}, {os.cpu_count()} cores, flags {listed} ({amx})"


def write_results(out: Path, results: dict, markdown: str | None = None) -> None:
    """The results as JSON at `out` and, if given, the Markdown summary beside it, each atomically."""
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    written = [out]
    if markdown is not None:
        atomic_write_text(out.with_suffix(".md"), markdown)
        written.append(out.with_suffix(".md"))
    print("wrote " + " and ".join(map(str, written)))
