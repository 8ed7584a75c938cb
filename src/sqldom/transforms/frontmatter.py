"""A fast path for the front matter most documents have: flat ``key: value`` lines.

PyYAML (even with libyaml) costs about 60 µs per document; the usual three
lines of title, date and summary are recognised here in a few microseconds.
The result must be exactly what ``_jsonable(yaml.load(raw, Loader=CSafeLoader))``
gives, so anything outside a narrow subset returns None and the caller asks PyYAML.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

# Characters left out of a quoted value. libyaml's reader refuses C0 controls
# (but tab), DEL, C1 (but NEL), \ufffe and \uffff; NEL (\x85) is a YAML 1.1
# line break that libyaml folds into a space even between quotes; a lone
# surrogate cannot be encoded to the UTF-8 libyaml reads (UnicodeEncodeError,
# not a YAMLError). Tab, \u2028, \u2029 and \ufeff are kept as they are in a
# one-line quoted scalar, but they are line breaks or a byte order mark
# elsewhere, and rare enough in front matter to leave to PyYAML.
_QUOTABLE = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ufeff\\ud800-\\udfff\\ufffe\\uffff"

# A plain value starts with a letter (so no indicator such as ``!&*|>%@`-?[{``
# and no number, date or ``.inf`` can begin it) and holds no ``:`` (a mapping
# value after ": ") and no ``#`` (a comment after " "). PyYAML drops trailing
# spaces, so the captured value ends with a non-space.
_PLAIN_END = r"A-Za-z0-9.,;!?()'/+=&_\-"

# A simple key may be at most 1024 characters long in libyaml (a longer one is
# an error); 1000 keeps well clear of that.
_LINE = re.compile(
    r"([A-Za-z_][A-Za-z0-9_-]{0,999}): +(?:"
    rf'"([^"\\{_QUOTABLE}]*)"'
    rf"|'([^'{_QUOTABLE}]*)'"
    r"|([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"|(0|[1-9][0-9]{0,17})"
    rf"|([A-Za-z](?:[ {_PLAIN_END}]*[{_PLAIN_END}])?)"
    r") *"
)

# The only plain scalars starting with a letter that YAML 1.1, as PyYAML's
# Resolver has it, turns into something other than a str: booleans (note: not
# ``y``/``n``, which the 1.1 spec lists but PyYAML does not) and nulls. Such a
# word as a key would become "True"/"None" after ``str(key)``; as a value, a bool or None.
_NOT_STR = frozenset(
    "yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF null Null NULL".split()
)


def simple_front_matter(raw: str) -> dict[str, Any] | None:
    """The front matter as PyYAML plus ``_jsonable`` would give it, or None if not sure.

    Only flat ``key: value`` lines are understood; a blank or comment line, an
    indented one, a tab, a CR or any other line break ``str.splitlines`` knows
    makes the whole document go to PyYAML, as does a date PyYAML would reject
    (``2023-02-30`` raises ValueError there). A duplicate key keeps its first
    position and its last value, as the dict PyYAML builds does.
    """
    if not raw.strip():
        return {}   # what split_front_matter uses without calling PyYAML
    lines = raw.split("\n")
    if lines[-1] == "":
        lines.pop()
    meta: dict[str, Any] = {}
    fullmatch = _LINE.fullmatch
    for line in lines:
        m = fullmatch(line)
        if m is None:
            return None
        key, dq, sq, year, month, day, number, plain = m.groups()
        if key in _NOT_STR:
            return None
        if dq is not None:
            meta[key] = dq
        elif sq is not None:
            meta[key] = sq
        elif year is not None:
            try:
                datetime.date(int(year), int(month), int(day))
            except ValueError:
                return None
            meta[key] = f"{year}-{month}-{day}"
        elif number is not None:
            meta[key] = int(number)
        elif plain in _NOT_STR:
            return None
        else:
            meta[key] = plain
    return meta
