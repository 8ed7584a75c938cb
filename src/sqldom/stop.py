"""A request to stop (SIGTERM) that is not lost when Python swallows the exception.

The signal handler raises ``Terminated`` at once; if that lands where Python
ignores exceptions (a garbage-collector callback, a ``__del__``), the flag it
set makes the next ``check()`` raise it again at a safe point of the build.
"""

from __future__ import annotations

import sys
from typing import Any


class Terminated(BaseException):
    """SIGTERM, turned into an exception so a build stops the way Ctrl-C stops it."""


_requested = False


def request(_signum: int = 0, _frame: object = None) -> None:
    global _requested
    _requested = True
    raise Terminated


def check() -> None:
    if _requested:
        raise Terminated


def quiet_unraisable(unraisable: Any) -> None:
    """Do not print 'Exception ignored in ...' for a stop request swallowed by Python; check() re-raises it."""
    if isinstance(unraisable.exc_value, Terminated | KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)
