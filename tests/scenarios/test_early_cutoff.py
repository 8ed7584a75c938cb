"""Early cutoff: a step re-executes only when a value it read changed. A page showing A's title rebuilds
when A's title changes, not when A's body changes; a page over a glob rebuilds when the membership or a
title it shows changes (SPEC sections 1, 4, 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.project import Project, clone, tables, write_build_py

BUILD_PY = '''\
import sqldom


@sqldom.page("index.html")
def index(site):
    items = [f"<li>{p}: {site.fact(p, 'title')}</li>" for p in site.glob("posts/*.md")]
    return "<ul>" + "".join(items) + "</ul>\\n"


@sqldom.page("about.html")
def about(site):
    return "About: " + site.fact("team.txt", "title", "(no about page yet)")
'''

B_HTML = '<html><head><title>B</title></head><body>\n<p>See <a href="a.txt"></a>.</p>\n</body></html>\n'

FILES = {
    "a.txt": "Alpha\nthe body of a\n",
    "b.html": B_HTML,
    "c.md": "# C\n\nSee [](a.txt).\n",
    "posts/one.md": "# One\n\nfirst post\n",
    "posts/two.md": "# Two\n\nsecond post\n",
    "other.md": "# Other\n\nnot a post\n",
}
ALL_STEPS = {"a.txt", "b.html", "c.md", "posts/one.md", "posts/two.md", "other.md", "index.html", "about.html"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    p = Project(tmp_path_factory.mktemp("cutoff") / "proj")
    for rel, text in FILES.items():
        p.write(rel, text)
    write_build_py(p, BUILD_PY)
    res = p.build()
    assert res.code == 0, (res.stderr, res.problems)
    assert res.executed == ALL_STEPS
    assert p.text("index.html") == "<ul><li>posts/one.md: One</li><li>posts/two.md: Two</li></ul>\n"
    assert '<a href="a.txt">Alpha</a>' in (p.text("b.html") or "")
    assert '<a href="a.txt">Alpha</a>' in (p.text("c.html") or "")
    assert p.text("about.html") == "About: (no about page yet)"
    return p


@pytest.fixture
def proj(baseline: Project, tmp_path: Path) -> Project:
    return clone(baseline, tmp_path / "proj")


def unchanged_outputs(before: dict[str, bytes], after: dict[str, bytes], *paths: str) -> None:
    for p in paths:
        assert after[p] == before[p], f"build/{p} changed"


def test_body_edit_of_a_link_target_rebuilds_only_that_document(proj: Project) -> None:
    before = proj.outputs()
    proj.write("a.txt", "Alpha\na different body, much longer than before\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.txt": "built"}
    after = proj.outputs()
    assert after["a.txt"] == b"Alpha\na different body, much longer than before\n"
    unchanged_outputs(before, after, "b.html", "c.html", "index.html")


def test_title_edit_of_a_link_target_rebuilds_the_pages_showing_it(proj: Project) -> None:
    proj.write("a.txt", "Aleph\nthe body of a\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.txt": "built", "b.html": "built", "c.md": "built"}
    assert '<a href="a.txt">Aleph</a>' in (proj.text("b.html") or "")
    assert '<a href="a.txt">Aleph</a>' in (proj.text("c.html") or "")
    assert tables(proj).facts("a.txt")["title"] == "Aleph"


def test_body_edit_of_a_listed_post_does_not_rebuild_the_index(proj: Project) -> None:
    before = proj.outputs()
    proj.write("posts/one.md", "# One\n\nthe first post, rewritten\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"posts/one.md": "built"}
    unchanged_outputs(before, proj.outputs(), "index.html")


def test_title_edit_of_a_listed_post_rebuilds_the_index(proj: Project) -> None:
    proj.write("posts/one.md", "# Number One\n\nfirst post\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"posts/one.md": "built", "index.html": "built"}
    assert proj.text("index.html") == "<ul><li>posts/one.md: Number One</li><li>posts/two.md: Two</li></ul>\n"
    assert {e["id"]: e["kind"] for e in res.events if e["event"] == "step"}["index.html"] == "page"


def test_adding_a_matching_doc_rebuilds_the_index(proj: Project) -> None:
    proj.write("posts/three.md", "# Three\n\nthird post\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"posts/three.md": "built", "index.html": "built"}
    assert proj.text("index.html") == ("<ul><li>posts/one.md: One</li><li>posts/three.md: Three</li>"
                                       "<li>posts/two.md: Two</li></ul>\n")


def test_deleting_a_matching_doc_rebuilds_the_index(proj: Project) -> None:
    proj.delete("posts/two.md")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"index.html": "built"}
    assert res.deleted == {"posts/two.html"}
    assert proj.text("index.html") == "<ul><li>posts/one.md: One</li></ul>\n"
    assert "posts/two.html" not in proj.outputs()


def test_docs_outside_the_glob_do_not_rebuild_the_index(proj: Project) -> None:
    before = proj.outputs()
    proj.write("notes.md", "# Notes\n")                    # added, not under posts/
    proj.write("other.md", "# Other, retitled\n")          # title changed, not read by anyone
    proj.write("posts/draft.txt", "Draft\n")               # under posts/ but not *.md
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"notes.md": "built", "other.md": "built", "posts/draft.txt": "built"}
    unchanged_outputs(before, proj.outputs(), "index.html", "b.html", "c.html")


def test_the_index_depends_on_the_titles_it_read_not_on_whole_documents(proj: Project) -> None:
    deps = tables(proj).deps("index.html")
    assert {(t, k) for kind, t, k in deps if kind == "fact"} == {("posts/one.md", "title"), ("posts/two.md", "title")}
    assert ("glob", "posts/*.md", "") in deps



def test_reading_a_fact_of_a_missing_document_records_its_absence(proj: Project) -> None:
    proj.write("team.txt", "The Team\nwho we are\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"team.txt": "built", "about.html": "built"}
    assert proj.text("about.html") == "About: The Team"

    proj.delete("team.txt")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"about.html": "restored"}        # the same reads as in the baseline: reused
    assert res.deleted == {"team.txt"}
    assert proj.text("about.html") == "About: (no about page yet)"


HASH_BUILD_PY = '''\
import sqldom


@sqldom.writer("*.txt", output="{stem}.key")
def key(doc, site):
    return doc.hash + "\\n"
'''


def test_doc_hash_is_recorded_as_a_read_of_the_source_and_follows_its_bytes(tmp_path: Path) -> None:
    """``doc.hash`` (a key for what a writer derives from the bytes) reads the source as ``doc.text`` does."""
    import xxhash
    p = Project(tmp_path / "p")
    p.write("a.txt", "first\n")
    p.write("b.txt", "other\n")
    write_build_py(p, HASH_BUILD_PY)
    assert p.build().code == 0
    assert p.text("a.key") == xxhash.xxh3_128_hexdigest(b"first\n") + "\n"
    assert ("source", "a.txt", "") in tables(p).deps("a.txt")
    p.write("a.txt", "second\n")
    r = p.build()
    assert r.executed == {"a.txt"}
    assert p.text("a.key") == xxhash.xxh3_128_hexdigest(b"second\n") + "\n"
