"""The benchmark corpus: generate once per (docs, seed), copy into each tool's workspace, pick edits.

The pristine corpus lives in ``WORK/n{docs}-s{seed}/corpus`` with a ``corpus.json`` marker written
only after the generator succeeded; a later run with the same docs, seed and generator reuses it.
Tools never build the pristine copy: each gets its own copy, so edits and reverts stay local.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

EMPTY_LINK = re.compile(r"\[\]\(([^)\s]+)\)")
ANY_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Segments a body edit must not touch: links (their href holds words like "section") and code spans.
PROTECTED = re.compile(r"(!?\[[^\]]*\]\([^)]*\)|`[^`]*`)")
WORD = re.compile(r"\b[a-z]{4,}\b")
TITLE_LINE = re.compile(r'^title: "(.*)"$', re.M)


def default_generator(repo: Path) -> Path:
    """``../shared/tools/gen_corpus.py`` beside the repository (where CI and developers have it)."""
    return repo.parent / "shared" / "tools" / "gen_corpus.py"


def ensure_corpus(work: Path, docs: int, seed: int, generator: Path) -> Path:
    """Return the pristine corpus for (docs, seed), generating it unless an identical one exists."""
    base = work / f"n{docs}-s{seed}"
    corpus = base / "corpus"
    marker = base / "corpus.json"
    gen_hash = hashlib.sha256(generator.read_bytes()).hexdigest()
    want = {"docs": docs, "seed": seed, "generator_sha256": gen_hash}
    if marker.is_file() and corpus.is_dir():
        try:
            if json.loads(marker.read_text()) == want:
                log(f"corpus: reusing {corpus} ({docs} docs, seed {seed})")
                return corpus
        except ValueError:
            pass
    shutil.rmtree(corpus, ignore_errors=True)
    marker.unlink(missing_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(generator), str(corpus), "--docs", str(docs), "--seed", str(seed)],
                   check=True)
    marker.write_text(json.dumps(want) + "\n")
    log(f"corpus: generated {corpus} in {time.perf_counter() - t0:.1f} s")
    return corpus


def copy_tree(src: Path, dst: Path, keep: Callable[[str], bool] = lambda rel: True) -> int:
    """Copy the files of ``src`` whose relative path passes ``keep`` into ``dst``; return the count."""
    n = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(src).as_posix()
        if not keep(rel):
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        n += 1
    return n


@dataclass
class CorpusInfo:
    root: Path
    files: list[str]                      # every file, relative, sorted
    markdown: list[str]                   # the .md documents, relative, sorted
    title_dependents: dict[str, set[str]] = field(default_factory=dict)  # target -> docs with [](target)
    linkers: dict[str, set[str]] = field(default_factory=dict)           # target -> docs linking at all

    @property
    def n_files(self) -> int:
        return len(self.files)


def scan_corpus(root: Path) -> CorpusInfo:
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    markdown = [f for f in files if f.endswith(".md")]
    info = CorpusInfo(root, files, markdown)
    known = set(files)
    for doc in markdown:
        text = (root / doc).read_text(encoding="utf-8")
        base = posixpath.dirname(doc)
        for pattern, table in ((EMPTY_LINK, info.title_dependents), (ANY_LINK, info.linkers)):
            for href in pattern.findall(text):
                if "://" in href:
                    continue
                target = posixpath.normpath(posixpath.join(base, href.split("#", 1)[0]))
                if target in known and target != doc:
                    table.setdefault(target, set()).add(doc)
    return info


def pick_title_target(info: CorpusInfo, minimum: int = 5) -> tuple[str, list[str]]:
    """The document with the fewest title dependents that still has >= ``minimum`` (ties: first path).

    A title dependent is a document with an empty-text link ``[](target)``: its output shows the
    target's title, so it must be rebuilt when that title changes.  On a corpus too small to have
    such a target, the one with the most dependents is returned (the caller reports the count).
    """
    candidates = sorted((len(deps), target) for target, deps in info.title_dependents.items()
                        if target.endswith(".md"))
    if not candidates:
        return info.markdown[0], []
    enough = [c for c in candidates if c[0] >= minimum]
    count, target = enough[0] if enough else max(candidates, key=lambda c: c[0])
    return target, sorted(info.title_dependents[target])


def pick_body_target(info: CorpusInfo) -> str:
    return info.markdown[len(info.markdown) // 2]


def pick_batch(info: CorpusInfo, fraction: float, seed: int) -> list[str]:
    k = max(1, round(len(info.markdown) * fraction))
    return sorted(random.Random(seed * 7919 + 1).sample(info.markdown, k))


# ---- edits: each returns new bytes (never seen before thanks to ``tag``) --------------------------

def body_edit(data: bytes, tag: str) -> bytes:
    """Change one word of the first body paragraph (outside links and code spans) to ``edited<tag>``."""
    lines = data.decode("utf-8").split("\n")
    start = 0
    if lines and lines[0] == "---":
        start = lines.index("---", 1) + 1
    for i in range(start, len(lines)):
        line = lines[i]
        if not line[:1].isalpha():
            continue
        parts = PROTECTED.split(line)
        for j in range(0, len(parts), 2):        # even parts are outside links and code spans
            m = WORD.search(parts[j])
            if m:
                parts[j] = parts[j][:m.start()] + f"edited{tag}" + parts[j][m.end():]
                lines[i] = "".join(parts)
                return "\n".join(lines).encode("utf-8")
    return data + f"\nedited{tag}\n".encode()


def title_edit(data: bytes, tag: str) -> tuple[bytes, str]:
    """Append ``Retitled<tag>`` to the front-matter title; return the new bytes and that marker."""
    marker = f"Retitled{tag}"
    text, n = TITLE_LINE.subn(lambda m: f'title: "{m.group(1)} {marker}"', data.decode("utf-8"), count=1)
    if not n:
        raise ValueError("no front-matter title line to edit")
    return text.encode("utf-8"), marker


def tree_digest(root: Path) -> tuple[str, int]:
    """sha256 over the sorted (relative path, content sha256) pairs of every file under ``root``."""
    h = hashlib.sha256()
    n = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
        n += 1
    return h.hexdigest(), n


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
