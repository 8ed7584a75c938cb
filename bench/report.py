"""The machine description and the results table, as plain text (terminal) and Markdown (results.md)."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence


def machine() -> list[tuple[str, str]]:
    cpu = "unknown"
    mem = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [("nproc", f"{usable} (os.cpu_count() = {os.cpu_count()})"),
            ("CPU", cpu),
            ("RAM", mem),
            ("OS", platform.platform()),
            ("Python", f"{platform.python_implementation()} {sys.version.split()[0]} ({sys.executable})")]


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f} s"
    if v >= 10:
        return f"{v:.1f} s"
    if v >= 1:
        return f"{v:.2f} s"
    return f"{v:.3f} s"


def fmt_mib(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} MiB"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "—"
    r = a / b
    return f"{r:.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_right: bool = True) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in [header, *rows]]
    marks = ["---"] + [("---:" if align_right else "---")] * (len(header) - 1)
    out = ["| " + " | ".join(esc[0]) + " |", "| " + " | ".join(marks) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(out)
