"""Code is an input: a step depends on the code of the functions that ran for it, including the
helpers and module constants of build.py they use, and on nothing else in build.py (SPEC section 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.project import Project, clone, reasons, write_build_py

BUILD_PY = '''\
import sqldom

PREFIX = "<!-- v1 -->"


def esc(text):
    return text.replace("&", "&amp;")


def heading(title):
    return f"<h1>{esc(title)}</h1>"


def unused(x):
    return x * 2


@sqldom.writer("**/*.md", output="{dir}{stem}.html")
def write_html(doc, site):
    return PREFIX + heading(doc.facts["title"])


@sqldom.writer("**/*.txt")
def write_text(doc, site):
    return doc.text.upper()
'''

FILES = {
    "a.md": "# Alpha\n\nText.\n",
    "docs/b.md": "# Beta\n\nMore text.\n",
    "n.txt": "a note\n",
    "s.css": "body { color: red }\n",
}
MD_STEPS = {"a.md", "docs/b.md"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Project:
    p = Project(tmp_path_factory.mktemp("fingerprints") / "proj")
    for rel, text in FILES.items():
        p.write(rel, text)
    write_build_py(p, BUILD_PY)
    res = p.build()
    assert res.code == 0, res.stderr
    assert res.steps == {"a.md": "built", "docs/b.md": "built", "n.txt": "built", "s.css": "built"}
    assert p.text("a.html") == "<!-- v1 --><h1>Alpha</h1>"
    assert p.text("n.txt") == "A NOTE\n"
    return p


@pytest.fixture
def proj(baseline: Project, tmp_path: Path) -> Project:
    return clone(baseline, tmp_path / "proj")


def edit_build_py(p: Project, old: str, new: str) -> None:
    text = (p.root / "build.py").read_text()
    assert old in text, f"test bug: {old!r} not in build.py"
    (p.root / "build.py").write_text(text.replace(old, new, 1))


def test_editing_a_writer_rebuilds_only_the_outputs_it_produced(proj: Project) -> None:
    before = proj.outputs()
    edit_build_py(proj, 'return PREFIX + heading(doc.facts["title"])',
                  'return PREFIX + heading(doc.facts["title"]) + "<hr>"')
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.md": "built", "docs/b.md": "built"}
    assert all("write_html" in why for why in reasons(res).values()), reasons(res)
    assert proj.text("a.html") == "<!-- v1 --><h1>Alpha</h1><hr>"
    assert proj.text("docs/b.html") == "<!-- v1 --><h1>Beta</h1><hr>"
    after = proj.outputs()
    assert after["n.txt"] == before["n.txt"] and after["s.css"] == before["s.css"]

    # the other writer: only its output
    edit_build_py(proj, "return doc.text.upper()", "return doc.text.upper() + '!'")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"n.txt": "built"}
    assert proj.text("n.txt") == "A NOTE\n!"


def test_editing_an_unused_function_rebuilds_nothing(proj: Project) -> None:
    before = proj.outputs()
    edit_build_py(proj, "return x * 2", "return x * 3")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.summary["built"] == 0 and res.summary["unchanged"] == 4

    # nor does adding new unused code: an import, a constant, a function
    edit_build_py(proj, "import sqldom\n", "import sqldom\nimport os\n\nLIMIT = 10\n\n\ndef spare():\n    return LIMIT\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert proj.outputs() == before


def test_editing_a_helper_rebuilds_the_outputs_of_the_writers_using_it(proj: Project) -> None:
    edit_build_py(proj, 'return f"<h1>{esc(title)}</h1>"', 'return f"<h1 class=\\"t\\">{esc(title)}</h1>"')
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.md": "built", "docs/b.md": "built"}
    assert proj.text("a.html") == '<!-- v1 --><h1 class="t">Alpha</h1>'
    assert proj.text("docs/b.html") == '<!-- v1 --><h1 class="t">Beta</h1>'


def test_editing_a_module_constant_rebuilds_the_outputs_of_the_writers_using_it(proj: Project) -> None:
    edit_build_py(proj, 'PREFIX = "<!-- v1 -->"', 'PREFIX = "<!-- v2 -->"')
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.md": "built", "docs/b.md": "built"}
    assert proj.text("a.html") == "<!-- v2 --><h1>Alpha</h1>"
    assert proj.text("n.txt") == "A NOTE\n"


def test_a_comment_only_edit_rebuilds_nothing(proj: Project) -> None:
    before = proj.outputs()
    edit_build_py(proj, "def write_html(doc, site):\n",
                  "def write_html(doc, site):  # the page writer\n    # a comment inside the function\n\n")
    edit_build_py(proj, 'PREFIX = "<!-- v1 -->"', '# a comment above a constant\nPREFIX = "<!-- v1 -->"  # trailing')
    edit_build_py(proj, "def heading(title):\n", "def heading(title):\n    # helpers too\n")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {}
    assert res.summary["built"] == 0
    assert proj.outputs() == before


def test_adding_a_rule_for_other_files_leaves_existing_outputs_alone(proj: Project) -> None:
    """A new writer for *.css changes the rules of s.css only."""
    edit_build_py(proj, "\n\ndef unused(x):",
                  '\n\n@sqldom.writer("**/*.css")\ndef write_css(doc, site):\n    return "/* min */" + doc.text\n'
                  "\n\ndef unused(x):")
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"s.css": "built"}
    assert proj.text("s.css") == "/* min */body { color: red }\n"


def test_editing_a_helper_of_a_helper_rebuilds_the_outputs_of_the_writers_using_it(proj: Project) -> None:
    proj.write("amp.md", "# Tom & Jerry\n")
    assert proj.build().steps == {"amp.md": "built"}
    assert proj.text("amp.html") == "<!-- v1 --><h1>Tom &amp; Jerry</h1>"
    edit_build_py(proj, 'return text.replace("&", "&amp;")', 'return text.replace("&", "and")')
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.md": "built", "docs/b.md": "built", "amp.md": "built"}
    assert proj.text("amp.html") == "<!-- v1 --><h1>Tom and Jerry</h1>"


def test_changing_a_writers_output_template_moves_only_its_outputs(proj: Project) -> None:
    edit_build_py(proj, 'output="{dir}{stem}.html"', 'output="{dir}{stem}.htm"')
    res = proj.build()
    assert res.code == 0
    assert res.steps == {"a.md": "built", "docs/b.md": "built"}
    assert res.deleted == {"a.html", "docs/b.html"}
    assert set(proj.outputs()) == {"a.htm", "docs/b.htm", "n.txt", "s.css"}
    assert proj.text("a.htm") == "<!-- v1 --><h1>Alpha</h1>"
