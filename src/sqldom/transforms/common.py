"""Helpers shared by the built-in transforms: decoding with problems, HTML page shell."""

from __future__ import annotations

import html

from sqldom.model import PARSE, Problem
from sqldom.site import Source


def decoded_text(source: Source, problems: list[Problem]) -> str:
    """The source as text; bad bytes become U+FFFD and an error problem naming the line."""
    data = source.data
    if b"\x00" in data[:8192]:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        problems.append(Problem(step=source.path, path=source.path, line=line, phase=PARSE,
                                message="binary content (NUL byte) in a text document"))
    text = source.text
    if source.decode_error is not None:
        offset, line = source.decode_error
        problems.append(Problem(step=source.path, path=source.path, line=line, phase=PARSE,
                                message=f"not valid UTF-8 (byte {offset}); bad bytes shown as U+FFFD"))
    return text


def html_page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title, quote=False)}</title>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
