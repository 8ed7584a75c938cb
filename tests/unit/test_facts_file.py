"""sqldom/facts_file.py: this build's facts held in a temporary file, shared with forked workers."""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqldom.facts_file import FLUSH_BYTES, FactsFile


@pytest.fixture
def held(tmp_path: Path) -> Iterator[FactsFile]:
    f = FactsFile(tmp_path / "tmp")
    yield f
    f.close()


def _packed(i: int) -> str:
    return json.dumps({"title": f"Caf\u00e9 n\u00b0{i}", "tags": ["x"] * (i % 7)}, ensure_ascii=False)


def test_facts_read_back_as_they_were_held_before_and_after_each_flush(held: FactsFile, tmp_path: Path) -> None:
    n = 3 * FLUSH_BYTES // len(_packed(0))   # (several flushes, and a tail still pending)
    for i in range(n):
        held[f"p{i}.md"] = _packed(i)
    assert held.pending, "the last appends are not written yet"
    assert held["p0.md"] == _packed(0) and held[f"p{n - 1}.md"] == _packed(n - 1)
    assert len(held) == n and "p5.md" in held and "nope.md" not in held
    assert dict(held) == {f"p{i}.md": _packed(i) for i in range(n)}
    held["p0.md"] = _packed(99)   # (set again: the new value wins)
    assert held["p0.md"] == _packed(99)
    assert list(tmp_path.joinpath("tmp").iterdir()) == [], "the file has no name: nothing is left behind"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="workers are forked")
def test_a_forked_worker_reads_the_facts_through_the_index_it_is_sent(held: FactsFile) -> None:
    """As Build.parse_ahead/write_ahead use it: made before the fork, filled by the parent, index sent after."""
    r, w = os.pipe()
    down_r, down_w = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            os.close(down_w)
            with open(down_r, "rb") as inbox:
                held.adopt(pickle.load(inbox))
            os.write(w, json.dumps({p: held[p] for p in held}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.close(down_r)
    for i in range(500):
        held[f"d/{i}.md"] = _packed(i)
    with open(down_w, "wb") as out:
        pickle.dump(held.index(), out)
    with open(r, "rb") as f:
        seen = json.loads(f.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == {f"d/{i}.md": _packed(i) for i in range(500)}


def test_a_file_cut_short_is_an_error_not_a_wrong_value(held: FactsFile) -> None:
    held["a.md"] = _packed(1)
    held.flush()
    os.ftruncate(held.fd, 3)
    with pytest.raises(OSError, match="cut short at a.md"):
        held["a.md"]


def test_the_index_holds_ints_not_strings(held: FactsFile) -> None:
    for i in range(1000):
        held[f"{i}.md"] = _packed(i) * 20
    index = held.index()
    assert all(type(v) is int for v in index.values())
    assert sys.getsizeof(pickle.dumps(index)) < sum(len(_packed(i) * 20) for i in range(1000)) // 10
