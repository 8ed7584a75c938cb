"""Markdown: front matter, title, links; rendered by markdown-it-py into an HTML5 page."""

from __future__ import annotations

import datetime
import pickle
import posixpath
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, NamedTuple

import yaml
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

from sqldom.model import PARSE, Problem
from sqldom.site import Doc, Site, Source
from sqldom.transforms import links
from sqldom.transforms.common import decoded_text, html_page

_md: MarkdownIt | None = None
_token_cache: OrderedDict[str, list[Token]] = OrderedDict()


def md() -> MarkdownIt:
    global _md
    if _md is None:
        _md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    return _md


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def split_front_matter(text: str, path: str, problems: list[Problem],
                       load: bool = True) -> tuple[dict[str, Any], str, int]:
    """(front matter, body, number of lines before the body); ``load=False`` only splits."""
    if not (text.startswith("---\n") or text.startswith("---\r\n")):
        return {}, text, 0
    lines = text.splitlines(keepends=True)
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n") in ("---", "..."):
            raw = "".join(lines[1:i])
            body = "".join(lines[i + 1:])
            if not load:
                return {}, body, i + 1
            try:
                meta = yaml.load(raw, Loader=_Loader) if raw.strip() else {}
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                line = mark.line + 2 if mark is not None else 1
                problem = getattr(e, "problem", None) or str(e)
                problems.append(Problem(step=path, path=path, line=line, phase=PARSE,
                                        message=f"front matter is not valid YAML: {problem}"))
                return {}, body, i + 1
            if not isinstance(meta, dict):
                problems.append(Problem(step=path, path=path, line=2, phase=PARSE,
                                        message="front matter must be a mapping of keys to values"))
                return {}, body, i + 1
            return _jsonable(meta), body, i + 1
    return {}, text, 0   # no closing fence: not front matter


def tokens(body: str, take: bool = False) -> list[Token]:
    """Parse once per distinct body: the parse phase leaves its tokens here for the write phase.

    ``take=True`` (the writer) removes them from the cache, so the writer may
    change them in place without copying.
    """
    if take:
        toks = _token_cache.pop(body, None)
        return toks if toks is not None else md().parse(body)
    toks = _token_cache.get(body)
    if toks is None:
        toks = md().parse(body)
        _token_cache[body] = toks
        if len(_token_cache) > 256:
            _token_cache.popitem(last=False)
    else:
        _token_cache.move_to_end(body)
    return toks


def _inline_text(tok: Token) -> str:
    return "".join(c.content for c in (tok.children or []) if c.type in ("text", "code_inline"))


def _walk_links(toks: list[Token], offset: int, body: str):  # type: ignore[no-untyped-def]
    """Yield (token, children, index, line) for each link_open and image in inline tokens.

    The line is found by locating the link's target in the block's raw lines, so
    code spans and inline HTML spanning lines cannot shift it; counting line
    breaks between tokens is the fallback.
    """
    lines = body.splitlines(keepends=True)
    for tok in toks:
        if tok.type != "inline" or not tok.children:
            continue
        start = tok.map[0] if tok.map else 0
        raw = "".join(lines[start: tok.map[1]]) if tok.map else ""
        cursor = 0
        line = offset + start + 1
        for i, child in enumerate(tok.children):
            if child.type in ("softbreak", "hardbreak"):
                line += 1
            elif child.type in ("link_open", "image"):
                target = str(child.attrGet("href") if child.type == "link_open" else child.attrGet("src") or "")
                at = _find(raw, target, cursor)
                if at >= 0:
                    cursor = at + 1
                    # a link starts where its text starts, lines before its target
                    found = offset + start + 1 + raw.count("\n", 0, at) - _breaks_in_text(tok.children, i)
                    yield tok, tok.children, i, found
                else:
                    yield tok, tok.children, i, line
            elif child.type == "text":
                line += child.content.count("\n")


def _breaks_in_text(children: list[Token], i: int) -> int:
    child = children[i]
    inner = child.children or [] if child.type == "image" else []
    if child.type == "link_open":
        depth, j = 0, i + 1
        while j < len(children) and not (children[j].type == "link_close" and depth == 0):
            depth += {"link_open": 1, "link_close": -1}.get(children[j].type, 0)
            inner.append(children[j])
            j += 1
    return sum(1 for c in inner if c.type in ("softbreak", "hardbreak"))


def _find(raw: str, target: str, cursor: int) -> int:
    from urllib.parse import unquote
    for candidate in (target, unquote(target)):
        if candidate:
            at = raw.find(candidate, cursor)
            if at >= 0:
                return at
    return -1


def parse(source: Source, problems: list[Problem]) -> dict[str, Any]:
    text = decoded_text(source, problems)
    meta, body, offset = split_front_matter(text, source.path, problems)
    toks = tokens(body)
    title = meta.get("title")
    if title in (None, ""):
        for i, tok in enumerate(toks):
            if tok.type == "heading_open" and tok.tag == "h1" and i + 1 < len(toks):
                title = _inline_text(toks[i + 1]).strip()
                break
    if title in (None, ""):
        title = posixpath.splitext(posixpath.basename(source.path))[0]
    hrefs: list[str] = []
    for tok in toks:   # document order
        if tok.type == "html_block":
            hrefs.extend(h for h, _ in links.hrefs_in_html(tok.content))
        for child in tok.children or []:
            if child.type == "html_inline":
                hrefs.extend(h for h, _ in links.hrefs_in_html(child.content))
            elif child.type in ("link_open", "image"):
                hrefs.append(str(child.attrGet("href") if child.type == "link_open" else child.attrGet("src") or ""))
    facts = dict(meta)
    facts["title"] = str(title)
    facts["links"] = links.link_targets(hrefs, source.path)
    return facts


# ---- write: render once into a template, then fill in what other documents decide ----------
#
# Rendering (the costly part after parsing) depends only on the document's own
# text; what depends on other documents (does a link target exist, what is its
# title) is a hole in the rendered text. The template can therefore be made in a
# worker process right after the parse (``prepare``), while the holes are filled
# where every fact is known, through ``site`` so that each read is recorded.
# A serial build goes through the same two steps, so both give the same bytes.

class Template(NamedTuple):
    """A rendered body cut at its holes: ``parts[0] slot parts[1] slot ...``."""

    parts: tuple[str, ...]     # one more than ``order``
    order: tuple[int, ...]     # which slot goes after parts[i]
    holes: tuple[tuple[Any, ...], ...]   # in the order their reads happen
    slots: int


class Prepared:
    """Templates made ahead by a worker for its own documents' writes, keyed by (path, source hash).

    Kept in a file, not in memory: a worker makes tens of thousands of them
    between its parse phase and its write phase, and holding them made its
    memory grow with the size of the site. The file has no name (O_TMPFILE),
    so it goes with the worker however the worker ends.
    """

    def __init__(self) -> None:
        self.file: IO[bytes] | None = None
        self.at: dict[tuple[str, str], int] = {}

    def put(self, key: tuple[str, str], tpl: Template, folder: Path | None) -> None:
        """Keep ``tpl``; if the file cannot take it (a full disk), the write renders the document again."""
        data = pickle.dumps(tpl, pickle.HIGHEST_PROTOCOL)
        try:
            if self.file is None:
                if folder is not None:
                    folder.mkdir(parents=True, exist_ok=True)
                self.file = tempfile.TemporaryFile(dir=folder)
            at = self.file.seek(0, 2)
            self.file.write(data)
        except OSError:
            return
        self.at[key] = at

    def take(self, key: tuple[str, str]) -> Template | None:
        at = self.at.pop(key, None)
        if at is None or self.file is None:
            return None
        try:
            self.file.seek(at)
            tpl: Template = pickle.load(self.file)
        except (OSError, pickle.UnpicklingError, EOFError):
            return None
        return tpl

    def clear(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file = None
        self.at = {}


_prepared = Prepared()


def write(doc: Doc, site: Site, problems: list[Problem]) -> bytes:
    # (doc.hash records the same read as doc.text: the page is the same either way)
    tpl = _prepared.take((doc.path, doc.hash)) if _prepared.at else None
    if tpl is None:
        _, body, offset = split_front_matter(doc.text, doc.path, [], load=False)   # (decoding: see parse)
        tpl = make_template(tokens(body, take=True), body, offset, doc.path)
    return fill(tpl, doc, site, problems)


def prepare(path: str, source_hash: str, data: bytes, folder: Path | None = None) -> None:
    """Make the template of a just-parsed document (its tokens are still cached) and keep it, in ``folder``, for its write."""
    text = data.decode("utf-8", errors="replace")
    _, body, offset = split_front_matter(text, path, [], load=False)
    _prepared.put((path, source_hash), make_template(tokens(body, take=True), body, offset, path), folder)


def discard_prepared() -> None:
    """Drop templates no write took (a build that wrote less than it parsed)."""
    _prepared.clear()


def make_template(toks: list[Token], body: str, offset: int, path: str) -> Template:
    """Render ``toks`` with a marker in every hole; the tokens are consumed (changed in place)."""
    holes: list[tuple[Any, ...]] = []
    setters: list[tuple[Token, str, int]] = []   # (token, "href" | "content", slot)

    def slot(tok: Token, what: str) -> int:
        setters.append((tok, what, len(setters)))
        return len(setters) - 1

    for _tok, children, i, line in _walk_links(toks, offset, body):
        child = children[i]
        if child.type == "image":
            holes.append(("image", str(child.attrGet("src") or ""), line))
            continue
        href_slot = slot(child, "href")
        text_slot = -1
        if i + 1 < len(children) and children[i + 1].type == "link_close":
            filler = Token("text", "", 0)
            children.insert(i + 1, filler)
            text_slot = slot(filler, "content")
        holes.append(("link", str(child.attrGet("href") or ""), line, href_slot, text_slot))
    for tok in toks:
        if tok.type == "html_block":
            first = offset + (tok.map[0] if tok.map else 0) + 1
            holes.append(("html", tok.content, first, slot(tok, "content")))
    for tok in toks:
        if tok.type == "inline" and tok.children:
            _inline_html_holes(tok, offset, holes, slot)
    return _render_cut(toks, body, setters, tuple(holes))


def _inline_html_holes(tok: Token, offset: int, holes: list[tuple[Any, ...]], slot: Any) -> None:
    """Inline ``<a href="x"></a>`` in a paragraph: two html_inline tokens side by side."""
    children = tok.children or []
    line = offset + (tok.map[0] if tok.map else 0) + 1
    for i, c in enumerate(children):
        if c.type in ("softbreak", "hardbreak"):
            line += 1
        if c.type == "html_inline" and c.content.lower().startswith("<a"):
            nxt = children[i + 1] if i + 1 < len(children) else None
            if nxt is not None and nxt.type == "html_inline" and nxt.content.lower().startswith("</a"):
                holes.append(("html", c.content + nxt.content, line, slot(c, "content")))
                nxt.content = ""
            else:
                holes.append(("html-open", c.content, line, slot(c, "content")))


def _render_cut(toks: list[Token], body: str, setters: list[tuple[Token, str, int]],
                holes: tuple[tuple[Any, ...], ...]) -> Template:
    """Render with ``<m>slot<m>`` markers, ``m`` a private-use character the output has nowhere else."""
    if not setters:
        return Template((md().renderer.render(toks, md().options, {}),), (), holes, 0)
    code = 0xE000
    while True:
        m = chr(code)
        code += 1
        if m in body:
            continue
        for tok, what, n in setters:
            if what == "href":
                tok.attrSet("href", f"{m}{n}{m}")
            else:
                tok.content = f"{m}{n}{m}"
        pieces = md().renderer.render(toks, md().options, {}).split(m)
        # text, slot, "", slot, ... : markers come in pairs around a slot number
        parts = [pieces[0]]
        order = []
        ok = len(pieces) == 2 * len(setters) + 1
        for k in range(1, len(pieces) - 1, 2) if ok else ():
            if not pieces[k].isdigit():
                ok = False
                break
            order.append(int(pieces[k]))
            parts.append(pieces[k + 1])
        if ok and sorted(order) == list(range(len(setters))):
            return Template(tuple(parts), tuple(order), holes, len(setters))
        # the marker came out of the text itself (an entity such as &#xE000;): try the next one


def fill(tpl: Template, doc: Doc, site: Site, problems: list[Problem]) -> bytes:
    """The page: every hole's read made through ``site`` (in document order), then joined."""
    values = [""] * tpl.slots
    for hole in tpl.holes:
        kind = hole[0]
        if kind == "image":
            links.check(site, hole[1], doc.path, hole[2], problems)
        elif kind == "link":
            _, href, line, href_slot, text_slot = hole
            target = links.check(site, href, doc.path, line, problems)
            values[href_slot] = escapeHtml(href if target is None else links.rewrite(href))
            if text_slot >= 0 and target is not None:
                values[text_slot] = escapeHtml(links.title_for(site, target))
        elif kind == "html":
            values[hole[3]] = links.process_html(hole[1], doc.path, site, problems, hole[2])
        else:   # "html-open": an <a> whose </a> comes later
            values[hole[3]] = links.process_html(hole[1] + "x</a>", doc.path, site, problems, hole[2])[: -len("x</a>")]
    out = [tpl.parts[0]]
    for i, n in enumerate(tpl.order):
        out.append(values[n])
        out.append(tpl.parts[i + 1])
    title = doc.facts.get("title") or posixpath.basename(doc.path)
    return html_page(str(title), "".join(out)).encode("utf-8")
