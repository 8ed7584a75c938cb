"""Phase timestamps on stderr for performance work (``SQLDOM_TIMINGS=1``); nothing otherwise.

Profilers that sample (py-spy) show where CPU goes, not when each phase of a
build starts and ends in each process, which is what finding the serial parts
of a parallel build needs. Each line: the wall clock (seconds since the epoch,
so that the lines of the main process and of its workers line up), the
process's CPU seconds so far, its pid, and the label.
"""

from __future__ import annotations

import os
import sys
import time

ENABLED = bool(os.environ.get("SQLDOM_TIMINGS"))


def mark(label: str) -> None:
    """Print one timestamp line (when enabled): cheap enough to leave in the hot path's phases."""
    if ENABLED:
        t = os.times()
        print(f"sqldom-timing {time.time():.3f}  cpu {t.user + t.system:7.3f} s  "
              f"pid {os.getpid()}  {label}", file=sys.stderr, flush=True)
