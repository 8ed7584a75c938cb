"""Markdown: front matter, title, links; rendered by markdown-it-pyrs into an HTML5 page.

markdown-it-pyrs is the Rust port of markdown-it: the same CommonMark rules and
the same HTML as markdown-it-py, about fifteen times faster (markdown-it-py's
parse was half of a cold build's CPU). It panics on a few inputs (an
unmatched backtick after ``[``, in 0.4.0); such a document is parsed by
markdown-it-py instead, which gives the same page.
"""

from __future__ import annotations

import datetime
import marshal
import os
import posixpath
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

from markdown_it_pyrs import MarkdownIt, Node

from sqldom.model import PARSE, Problem
from sqldom.site import Doc, Site, Source
from sqldom.transforms import links
from sqldom.transforms.common import decoded_text, html_page
from sqldom.transforms.frontmatter import simple_front_matter

_md: MarkdownIt | None = None
_reference: Any = None
_devnull = -1


class Item(NamedTuple):
    """What parse and write need of one node of a body, in document order."""

    name: str      # link, autolink, image, html_block, html_inline, or h1 (the first level-1 heading)
    value: str     # the link's URL (normalised as in the page), the raw HTML, or the heading's text
    line: int      # first line, counted from the body's first line (1)
    empty: bool    # a link with no text: [](x.md)
    start: int     # order in the body; inline HTML right after another has start == the other's end
    end: int


_items_cache: OrderedDict[str, list[Item]] = OrderedDict()


def md() -> MarkdownIt:
    """CommonMark with raw HTML, plus GFM tables and strikethrough."""
    global _md
    if _md is None:
        _md = MarkdownIt("commonmark").enable_many(["table", "strikethrough"])
    return _md


def reference() -> Any:
    """markdown-it-py with the same rules, for the documents markdown-it-pyrs cannot parse."""
    global _reference
    if _reference is None:
        from markdown_it import MarkdownIt as PyMarkdownIt
        _reference = PyMarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    return _reference


def _is_panic(e: BaseException) -> bool:
    """pyo3 turns a Rust panic into ``PanicException``, a BaseException that only a panic raises."""
    return type(e).__name__ == "PanicException"


def _quietly(call: Callable[[str], Any], body: str) -> Any:
    """``call(body)`` with file descriptor 2 on /dev/null when the body could make it panic.

    A Rust panic prints its message (and, with RUST_BACKTRACE set, a backtrace)
    on stderr before Python sees it; the document is then parsed again by
    markdown-it-py, so the message would only alarm. The panics known need a
    backtick and a bracket. No Python thread can write meanwhile: the call holds the GIL.
    """
    if "`" not in body or "[" not in body:
        return call(body)
    global _devnull
    if _devnull < 0:
        _devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    try:
        os.dup2(_devnull, 2)
        return call(body)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def render(body: str) -> str:
    try:
        return str(_quietly(md().render, body))
    except BaseException as e:
        if not _is_panic(e):
            raise
        return str(reference().render(body))


def escape_html(text: str) -> str:
    """What the renderer does to attribute values: ``& < > "`` become entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


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


def _yaml() -> tuple[Any, Any]:
    """PyYAML and its fastest safe loader, imported for the first front matter the fast reader cannot
    read (``simple_front_matter`` reads flat ``key: value`` lines, most front matter, without it)."""
    import yaml
    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def split_front_matter(text: str, path: str, problems: list[Problem],
                       load: bool = True) -> tuple[dict[str, Any], str, int]:
    """(front matter, body, number of lines before the body); ``load=False`` only splits."""
    if not (text.startswith("---\n") or text.startswith("---\r\n")):
        return {}, text, 0
    found = _fence(text)
    if found is _UNSURE:
        found = _fence_by_lines(text)
    if found is None:
        return {}, text, 0   # no closing fence: not front matter
    raw, body, n = found
    if not load:
        return {}, body, n
    return _load_front_matter(raw, path, problems), body, n


_Split = tuple[str, str, int] | None   # (front matter, body, lines before the body), None: no closing fence
_UNSURE: Any = object()
# what str.splitlines also takes for a line break: where one comes before the fence, it decides
_ODD_BREAKS = re.compile("[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _fence(text: str) -> _Split:
    """The split ``_fence_by_lines`` makes, found with ``str.find`` (a tenth of the time); ``_UNSURE`` if
    a line break other than ``\n`` comes before the fence, where only ``splitlines`` says what a line is."""
    start = 4   # after "---\n"
    while True:
        end = text.find("\n", start)
        line = text[start:end] if end >= 0 else text[start:]
        if line in ("---", "..."):
            break
        if end < 0:
            return _UNSURE if _ODD_BREAKS.search(text) else None
        start = end + 1
    if _ODD_BREAKS.search(text, 0, start + 3):
        return _UNSURE
    raw = text[4:start]
    return raw, text[end + 1:] if end >= 0 else "", raw.count("\n") + 2


def _fence_by_lines(text: str) -> _Split:
    lines = text.splitlines(keepends=True)
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n") in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1:]), i + 1
    return None


def _load_front_matter(raw: str, path: str, problems: list[Problem]) -> dict[str, Any]:
    """The front matter as JSON-ready values; a problem (naming the line) and {} when it is not a YAML mapping."""
    fast = simple_front_matter(raw)   # (flat key: value lines, a tenth of PyYAML's time)
    if fast is not None:
        return fast
    yaml, loader = _yaml()
    try:
        meta = yaml.load(raw, Loader=loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e)
        problems.append(Problem(step=path, path=path, line=line, phase=PARSE,
                                message=f"front matter is not valid YAML: {problem}"))
        return {}
    except ValueError as e:   # a date that does not exist (2023-02-30): PyYAML raises it bare
        problems.append(Problem(step=path, path=path, line=_bad_value_line(raw), phase=PARSE,
                                message=f"front matter has a value YAML cannot read: {e}"))
        return {}
    if not isinstance(meta, dict):
        problems.append(Problem(step=path, path=path, line=2, phase=PARSE,
                                message="front matter must be a mapping of keys to values"))
        return {}
    return dict(_jsonable(meta))


def _bad_value_line(raw: str) -> int:
    """The line of the front matter (counted in the file) whose value alone raises ValueError; else its first."""
    yaml, loader = _yaml()
    for i, line in enumerate(raw.split("\n")):
        try:
            yaml.load(line, Loader=loader)
        except ValueError:
            return i + 2
        except yaml.YAMLError:
            continue   # (a part of a value that spans lines)
    return 2


def items(body: str, take: bool = False) -> list[Item]:
    """Parse once per distinct body: the parse phase leaves its items here for the write phase.

    ``take=True`` (the writer) removes them from the cache: a body is written once.
    """
    if take:
        got = _items_cache.pop(body, None)
        return got if got is not None else _items(body)
    got = _items_cache.get(body)
    if got is None:
        got = _items_cache[body] = _items(body)
        if len(_items_cache) > 256:
            _items_cache.popitem(last=False)
    else:
        _items_cache.move_to_end(body)
    return got


_KEPT = frozenset({"link", "autolink", "image", "html_block", "html_inline", "heading", "lheading"})


def _items(body: str) -> list[Item]:
    if "<" not in body:
        page = render(body)
        _pages[body] = page   # (for make_template, which comes next)
        if len(_pages) > 8:
            _pages.popitem(last=False)
        return _items_from_page(page)
    return _items_by_tree(body)


# Bodies without "<" have no raw HTML and no autolink, so every tag of their page is the
# renderer's own: links, images and headings can be read off the page, at a tenth of the cost
# of markdown-it-pyrs's tree (its Rust nodes become Python objects). What the page does not
# give is a link's line, wanted only for a problem: ``fill`` asks the tree then (``_link_lines``).
_pages: OrderedDict[str, str] = OrderedDict()
_PAGE_TAGS = re.compile(r'<a href="([^"]*)"[^>]*>(</a>)?|<img src="([^"]*)"|<h1>')
_H1_DROPPED = re.compile(r"<[^>]*>|\n")   # (tags, with an image's alt text, and line breaks: not text)
NO_LINE = -1   # Item.line of an item read off the page


def _unescape(text: str) -> str:
    """The inverse of ``escape_html``: the only entities the renderer writes in text and attributes."""
    if "&" not in text:
        return text
    return text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _items_from_page(page: str) -> list[Item]:
    """``_items_by_tree`` of a body without "<", from its page; lines are NO_LINE."""
    out: list[Item] = []
    titled = False
    for k, m in enumerate(_PAGE_TAGS.finditer(page)):
        href, closed, src = m.group(1, 2, 3)
        if href is not None:
            out.append(Item("link", _unescape(href), NO_LINE, closed is not None, k, k + 1))
        elif src is not None:
            out.append(Item("image", _unescape(src), NO_LINE, False, k, k + 1))
        elif not titled:
            titled = True
            inner = page[m.end():page.find("</h1>", m.end())]
            out.append(Item("h1", _unescape(_H1_DROPPED.sub("", inner)), NO_LINE, False, k, k + 1))
    return out


def _link_lines(body: str, offset: int) -> list[int]:
    """The line of each link and image of ``body``, in order (the tree's; for a problem's message)."""
    return [offset + it.line for it in _items_by_tree(body) if it.name in ("link", "autolink", "image")]


def _items_by_tree(body: str) -> list[Item]:
    try:
        root = _quietly(md().tree, body)
    except BaseException as e:
        if not _is_panic(e):
            raise
        return _items_from_tokens(body)
    data = body.encode("utf-8")   # (node offsets are in bytes)
    out: list[Item] = []
    skip_to = -1   # the end of an image: its alt text is plain text, links in it are not links
    at, line = 0, 1
    titled = False
    for node in root.walk(include_self=False):
        name = node.name
        if name not in _KEPT:
            continue
        span = node.srcmap or (at, at)
        if span[0] < skip_to:
            continue
        line += data.count(b"\n", at, span[0])
        at = span[0]
        meta = node.meta
        if name in ("heading", "lheading"):
            if not titled and meta.get("level") == 1:
                titled = True
                out.append(Item("h1", _inline_text(node), line, False, span[0], span[1]))
            continue
        if name == "image":
            skip_to = span[1]
        value = meta.get("url" if name in ("link", "autolink", "image") else "content", "")
        out.append(Item(name, str(value), line, name == "link" and not node.children, span[0], span[1]))
    return out


def _inline_text(node: Node) -> str:
    """The text of a heading, as markdown-it-py's text tokens give it: no markup, no raw HTML, no image."""
    out: list[str] = []
    stack = list(reversed(node.children))
    while stack:
        c = stack.pop()
        if c.name in ("text", "text_special"):
            out.append(c.meta.get("content", ""))
        elif c.name != "image":
            stack.extend(reversed(c.children))
    return "".join(out)


def _items_from_tokens(body: str) -> list[Item]:
    """The items from markdown-it-py's tokens. Lines inside a paragraph are counted from its line breaks."""
    toks = reference().parse(body)
    out: list[Item] = []
    n = 0   # (a running index: children next to each other get start == the previous end)
    titled = False
    for i, tok in enumerate(toks):
        first = (tok.map[0] if tok.map else 0) + 1
        if tok.type == "heading_open" and tok.tag == "h1" and not titled and i + 1 < len(toks):
            titled = True
            text = "".join(c.content for c in toks[i + 1].children or [] if c.type in ("text", "code_inline"))
            out.append(Item("h1", text, first, False, n, n))
        elif tok.type == "html_block":
            out.append(Item("html_block", tok.content, first, False, n, n + 1))
        n += 1
        line = first
        children = tok.children or []
        for j, c in enumerate(children):
            n += 1
            if c.type in ("softbreak", "hardbreak"):
                line += 1
            elif c.type == "text":
                line += c.content.count("\n")
            elif c.type == "link_open":
                name = "autolink" if c.markup == "autolink" else "link"
                empty = j + 1 < len(children) and children[j + 1].type == "link_close"
                out.append(Item(name, str(c.attrGet("href") or ""), line, empty, n, n + 1))
            elif c.type == "image":
                out.append(Item("image", str(c.attrGet("src") or ""), line, False, n, n + 1))
            elif c.type == "html_inline":
                out.append(Item("html_inline", c.content, line, False, n, n + 1))
    return out


def parse(source: Source, problems: list[Problem]) -> dict[str, Any]:
    text = decoded_text(source, problems)
    meta, body, offset = split_front_matter(text, source.path, problems)
    found = items(body)
    title = meta.get("title")
    if title in (None, ""):
        title = next((it.value.strip() for it in found if it.name == "h1"), None)
    if title in (None, ""):
        title = posixpath.splitext(posixpath.basename(source.path))[0]
    hrefs: list[str] = []
    for it in found:   # document order
        if it.name in ("html_block", "html_inline"):
            hrefs.extend(h for h, _ in links.hrefs_in_html(it.value))
        elif it.name != "h1":
            hrefs.append(it.value)
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
    so it goes with the worker however the worker ends. A template is stored
    with ``marshal`` (plain tuples of str and int) and read back with one
    ``pread`` of its known length: pickle to and from a buffered file cost
    three times as much.
    """

    def __init__(self) -> None:
        self.file: IO[bytes] | None = None
        self.end = 0
        self.at: dict[tuple[str, str], tuple[int, int]] = {}

    def put(self, key: tuple[str, str], tpl: Template, folder: Path | None) -> None:
        """Keep ``tpl``; if the file cannot take it (a full disk), the write renders the document again."""
        data = marshal.dumps(tuple(tpl))
        try:
            if self.file is None:
                if folder is not None:
                    folder.mkdir(parents=True, exist_ok=True)
                self.file = tempfile.TemporaryFile(dir=folder, buffering=0)
            written = self.file.write(data) or 0
        except OSError:
            return
        if written == len(data):
            self.at[key] = (self.end, written)
        self.end += written

    def take(self, key: tuple[str, str]) -> Template | None:
        got = self.at.pop(key, None)
        if got is None or self.file is None:
            return None
        at, size = got
        try:
            data = os.pread(self.file.fileno(), size, at)
            return Template(*marshal.loads(data)) if len(data) == size else None
        except (OSError, ValueError, EOFError, TypeError):
            return None

    def clear(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file = None
        self.end = 0
        self.at = {}


_prepared = Prepared()


def write(doc: Doc, site: Site, problems: list[Problem]) -> bytes:
    # (doc.hash records the same read as doc.text: the page is the same either way)
    tpl = _prepared.take((doc.path, doc.hash)) if _prepared.at else None
    if tpl is None:
        _, body, offset = split_front_matter(doc.text, doc.path, [], load=False)   # (decoding: see parse)
        tpl = make_template(items(body, take=True), body, offset, doc.path)
    return fill(tpl, doc, site, problems)


def prepare(path: str, source_hash: str, data: bytes, folder: Path | None = None) -> None:
    """Make the template of a just-parsed document (its items are still cached) and keep it, in ``folder``, for its write."""
    text = data.decode("utf-8", errors="replace")
    _, body, offset = split_front_matter(text, path, [], load=False)
    _prepared.put((path, source_hash), make_template(items(body, take=True), body, offset, path), folder)


def discard_prepared() -> None:
    """Drop templates no write took (a build that wrote less than it parsed)."""
    _prepared.clear()


def make_template(found: list[Item], body: str, offset: int, path: str) -> Template:
    """Render ``body`` and cut the page at its holes, found from ``found`` (the body's items).

    The renderer gives only the whole page, so each hole is found in it:
    items come in the order of their HTML, a Markdown link is the next
    ``<a href="`` the renderer wrote (text is escaped, an image's alt is
    plain text) and raw HTML is copied verbatim. A cursor moves through the
    page past each item found, so raw HTML that looks like a link is never
    taken for the next Markdown link.
    """
    page = _pages.pop(body, None)
    if page is None:
        page = render(body)
    # Holes in the order markdown-it-py's token walk made them (links and images, HTML blocks,
    # inline <a>), so that reads and problems keep their order; slots are numbered in that order.
    link_holes: list[tuple[Any, ...]] = []
    block_holes: list[tuple[Any, ...]] = []
    inline_holes: list[tuple[Any, ...]] = []
    link_cuts: list[tuple[int, int]] = []      # (start, end) in the page, per slot of link_holes
    block_cuts: list[tuple[int, int]] = []
    inline_cuts: list[tuple[int, int]] = []
    cursor = 0
    skip = -1
    for k, it in enumerate(found):
        name, line = it.name, (offset + it.line if it.line != NO_LINE else None)
        if k == skip or name == "h1":
            continue
        if name in ("link", "autolink"):
            at = page.find('<a href="', cursor)
            if at < 0:   # (cannot happen with this renderer: the link would be checked, not rewritten)
                link_holes.append(("image", it.value, line))
                continue
            start = at + len('<a href="')
            end = page.find('"', start)
            cursor = end
            href_slot, text_slot = len(link_cuts), -1
            link_cuts.append((start, end))
            if it.empty:   # [](x.md): the target's title goes between <a ...> and </a>
                cursor = page.find(">", end) + 1
                text_slot = len(link_cuts)
                link_cuts.append((cursor, cursor))
            link_holes.append(("link", it.value, line, href_slot, text_slot))
        elif name == "image":
            link_holes.append(("image", it.value, line))
        else:   # raw HTML
            content = it.value
            nxt = found[k + 1] if k + 1 < len(found) else None
            kind = "html"
            if name == "html_inline":
                if not content.lower().startswith("<a"):
                    kind = ""   # not a hole; found only to move the cursor past it
                elif (nxt is not None and nxt.name == "html_inline" and nxt.start == it.end
                      and nxt.value.lower().startswith("</a")):
                    content += nxt.value   # <a href="x"></a>: one hole
                    skip = k + 1
                else:
                    kind = "html-open"   # an <a> whose </a> comes later
            at = page.find(content, cursor)
            if at < 0:
                continue
            cursor = at + len(content)
            if kind:
                holes, cuts = (block_holes, block_cuts) if name == "html_block" else (inline_holes, inline_cuts)
                holes.append((kind, content, line, len(cuts)))
                cuts.append((at, cursor))
    return _cut(page, link_holes, link_cuts, block_holes, block_cuts, inline_holes, inline_cuts)


def _cut(page: str, link_holes: list[tuple[Any, ...]], link_cuts: list[tuple[int, int]],
         block_holes: list[tuple[Any, ...]], block_cuts: list[tuple[int, int]],
         inline_holes: list[tuple[Any, ...]], inline_cuts: list[tuple[int, int]]) -> Template:
    """Number the slots category by category (links, HTML blocks, inline HTML) and cut ``page`` at them."""
    holes = list(link_holes)
    first = len(link_cuts)
    for group, base in ((block_holes, first), (inline_holes, first + len(block_cuts))):
        holes.extend((*h[:3], h[3] + base) for h in group)
    cuts = sorted((span, n) for n, span in enumerate(link_cuts + block_cuts + inline_cuts))
    parts, order, at = [], [], 0
    for (start, end), n in cuts:
        parts.append(page[at:start])
        order.append(n)
        at = end
    parts.append(page[at:])
    return Template(tuple(parts), tuple(order), tuple(holes), len(cuts))


def fill(tpl: Template, doc: Doc, site: Site, problems: list[Problem]) -> bytes:
    """The page: every hole's read made through ``site`` (in document order), then joined."""
    values = [""] * tpl.slots
    lines: list[int] | None = None
    for k, hole in enumerate(tpl.holes):
        if hole[2] is None:   # (a link or image read off the page: its line only if it has a problem)
            before = len(problems)
            _fill_hole(hole, values, doc, site, problems)
            if len(problems) > before:
                if lines is None:
                    _, body, offset = split_front_matter(doc.text, doc.path, [], load=False)
                    lines = _link_lines(body, offset)
                line = lines[k] if k < len(lines) else None
                problems[before:] = [p._replace(line=line) for p in problems[before:]]
            continue
        _fill_hole(hole, values, doc, site, problems)
    out = [tpl.parts[0]]
    for i, n in enumerate(tpl.order):
        out.append(values[n])
        out.append(tpl.parts[i + 1])
    title = doc.facts.get("title") or posixpath.basename(doc.path)
    return html_page(str(title), "".join(out)).encode("utf-8")


def _fill_hole(hole: tuple[Any, ...], values: list[str], doc: Doc, site: Site, problems: list[Problem]) -> None:
    """One hole's read (through ``site``) and its text."""
    kind = hole[0]
    if kind == "image":
        links.check(site, hole[1], doc.path, hole[2], problems)
    elif kind == "link":
        _, href, line, href_slot, text_slot = hole
        target = links.check(site, href, doc.path, line, problems)
        values[href_slot] = escape_html(href if target is None else links.rewrite(href))
        if text_slot >= 0 and target is not None:
            values[text_slot] = escape_html(links.title_for(site, target))
    elif kind == "html":
        values[hole[3]] = links.process_html(hole[1], doc.path, site, problems, hole[2])
    else:   # "html-open": an <a> whose </a> comes later
        values[hole[3]] = links.process_html(hole[1] + "x</a>", doc.path, site, problems, hole[2])[: -len("x</a>")]
