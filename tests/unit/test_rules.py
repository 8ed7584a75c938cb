"""sqldom.rules: output templates, confinement to build/, rule order, spec hashes, pages."""

from __future__ import annotations

import pytest

from sqldom.api import UserRule
from sqldom.rules import OutputError, Rule, RuleSet, builtin_rules, check_output_path, render_output


def _f(*args: object) -> str:
    return ""


def _g(*args: object) -> str:
    return ""


# --- render_output --------------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "path", "expected"), [
    ("{path}", "a/b.md", "a/b.md"),
    ("{dir}", "a/b.md", "a"),            # "a/" normalised
    ("{dir}x", "a/b.md", "a/x"),
    ("{dir}x", "b.md", "x"),             # no folder: {dir} is empty
    ("{stem}", "a/b.md", "b"),
    ("{name}", "a/b.md", "b.md"),
    ("{ext}", "a/b.md", ".md"),
    ("{dir}{stem}.html", "docs/intro.md", "docs/intro.html"),
    ("{dir}{stem}.html", "intro.md", "intro.html"),
    ("{dir}{stem}/index.html", "x/y/post.md", "x/y/post/index.html"),
    ("out/{name}", "a/b.tar.gz", "out/b.tar.gz"),
    ("{stem}{ext}", "a/b.tar.gz", "b.tar.gz"),
    ("{stem}.html", "README", "README.html"),
    ("{dir}../x", "a/b.md", "x"),        # stays inside build/: allowed, normalised
    ("./{name}", "a/b.md", "b.md"),
])
def test_render_output(template: str, path: str, expected: str) -> None:
    assert render_output(template, path) == expected


@pytest.mark.parametrize(("template", "path"), [
    ("../x", "a.md"),
    ("/x", "a.md"),
    ("/{path}", "a.md"),
    ("{dir}../../x", "a/b.md"),
    ("{dir}../x", "b.md"),
    ("a/../../x", "b.md"),
    ("..", "b.md"),
    ("{dir}..", "a/b.md"),       # build/ itself is not an output file
    (".", "a.md"),
    ("", "a.md"),
    ("a\\b", "a.md"),
])
def test_render_output_refuses_paths_leaving_build(template: str, path: str) -> None:
    with pytest.raises(OutputError, match="outside build/"):
        render_output(template, path)


@pytest.mark.parametrize("template", ["{nope}.html", "{0}", "{", "{stem"])
def test_render_output_invalid_template(template: str) -> None:
    with pytest.raises(OutputError, match="invalid"):
        render_output(template, "a.md")


def test_check_output_path_normalises() -> None:
    assert check_output_path("a/./b//c.html", "t") == "a/b/c.html"
    with pytest.raises(OutputError):
        check_output_path("../x", "t")


# --- built-ins and RuleSet -------------------------------------------------------------------------

def test_builtin_rules_order_and_outputs() -> None:
    rules = builtin_rules("H")
    writers = [(r.builtin, r.pattern, r.output) for r in rules if r.kind == "writer"]
    assert writers == [("markdown", "**/*.md", "{dir}{stem}.html"), ("html", "**/*.html", "{path}"),
                       ("text", "**/*.txt", "{path}"), ("copy", "**", "{path}")]
    assert all(r.code_hash == "H" for r in rules)
    assert all(r.func is None for r in rules)
    parsers = [r.name for r in rules if r.kind == "parser"]
    assert parsers == ["builtin:markdown.parse", "builtin:html.parse", "builtin:text.parse", "builtin:copy.parse"]


@pytest.mark.parametrize(("path", "module", "output"), [
    ("a.md", "markdown", "a.html"),
    ("docs/intro.md", "markdown", "docs/intro.html"),
    ("x/y/z.md", "markdown", "x/y/z.html"),
    ("page.html", "html", "page.html"),
    ("x/page.html", "html", "x/page.html"),
    ("notes.txt", "text", "notes.txt"),
    ("a/b/notes.txt", "text", "a/b/notes.txt"),
    ("img/logo.png", "copy", "img/logo.png"),
    ("Makefile", "copy", "Makefile"),
    ("a.md.bak", "copy", "a.md.bak"),
    ("a.markdown", "copy", "a.markdown"),
])
def test_builtin_assignment(path: str, module: str, output: str) -> None:
    rs = RuleSet([], {}, "H")
    a = rs.assign(path)
    assert a.parser.builtin == module and a.writer.builtin == module
    assert a.parser.kind == "parser" and a.writer.kind == "writer"
    assert a.output == output
    assert a.output_error is None


def test_user_rules_come_before_builtins_and_first_match_wins() -> None:
    user = [
        UserRule("writer", "posts/*.md", "{dir}{stem}/index.html", _f),
        UserRule("writer", "**/*.md", "{dir}{stem}.htm", _g),
        UserRule("parser", "**/*.md", None, _g),
    ]
    rs = RuleSet(user, {"_f": "FP_F", "_g": "FP_G"}, "H")
    a = rs.assign("posts/hello.md")
    assert a.writer.name == "build.py:_f" and a.writer.func is _f
    assert a.output == "posts/hello/index.html"
    assert a.writer.code_hash == "FP_F"
    assert a.parser.name == "build.py:_g" and a.parser.code_hash == "FP_G"

    b = rs.assign("other/x.md")
    assert b.writer.name == "build.py:_g" and b.output == "other/x.htm"

    c = rs.assign("notes.txt")  # no user rule matches: built-in
    assert c.writer.builtin == "text" and c.output == "notes.txt"


def test_user_writer_with_builtin_parser() -> None:
    rs = RuleSet([UserRule("writer", "**/*.txt", "{dir}{stem}.out", _f)], {}, "H")
    a = rs.assign("a/b.txt")
    assert a.parser.builtin == "text"
    assert a.writer.func is _f
    assert a.output == "a/b.out"


def test_user_file_name_is_part_of_the_rule_name() -> None:
    rs = RuleSet([UserRule("writer", "*.md", "{stem}.x", _f)], {}, "H", user_file="tools/site.py")
    assert rs.assign("a.md").writer.name == "tools/site.py:_f"
    assert "tools/site.py:_f" in rs.by_name


def test_escaping_output_is_an_assignment_error_not_an_exception() -> None:
    rs = RuleSet([UserRule("writer", "**/*.md", "{dir}../../{name}", _f)], {}, "H")
    a = rs.assign("a/b.md")
    assert a.output is None
    assert a.output_error is not None and "outside build/" in a.output_error
    assert a.writer.func is _f


def test_code_hashes_cover_every_rule() -> None:
    rs = RuleSet([UserRule("page", "index.html", "index.html", _f)], {"_f": "X"}, "B")
    hashes = rs.code_hashes()
    assert hashes["build.py:_f"] == "X"
    assert hashes["builtin:markdown.write"] == "B"
    assert hashes["builtin:copy.parse"] == "B"


def test_missing_fingerprint_falls_back_to_a_stable_hash() -> None:
    a = RuleSet([UserRule("writer", "*.md", "{stem}.x", _f)], {}, "H").assign("a.md").writer
    b = RuleSet([UserRule("writer", "*.md", "{stem}.x", _f)], {}, "H").assign("a.md").writer
    assert a.code_hash and a.code_hash == b.code_hash


# --- spec_hash -------------------------------------------------------------------------------------

def test_spec_hash_changes_with_pattern_and_output_only() -> None:
    base = Rule(kind="writer", name="build.py:w", pattern="**/*.md", output="{dir}{stem}.html", func=_f)
    same = Rule(kind="writer", name="build.py:w", pattern="**/*.md", output="{dir}{stem}.html", func=_g,
                code_hash="other")
    assert base.spec_hash == same.spec_hash   # code is a separate read
    assert Rule("writer", "build.py:w", "*.md", "{dir}{stem}.html").spec_hash != base.spec_hash
    assert Rule("writer", "build.py:w", "**/*.md", "{stem}.html").spec_hash != base.spec_hash
    assert Rule("writer", "build.py:v", "**/*.md", "{dir}{stem}.html").spec_hash != base.spec_hash
    assert Rule("parser", "build.py:w", "**/*.md", "{dir}{stem}.html").spec_hash != base.spec_hash


def test_rule_matches() -> None:
    r = Rule("writer", "x", "**/*.md", "{path}")
    assert r.matches("a.md") and r.matches("a/b.md") and not r.matches("a.txt")


# --- pages -----------------------------------------------------------------------------------------

def test_page_outputs() -> None:
    user = [UserRule("page", "index.html", "index.html", _f),
            UserRule("page", "feeds/./atom.xml", "feeds/./atom.xml", _g),
            UserRule("page", "../evil.html", "../evil.html", _g),
            UserRule("page", "/abs.html", "/abs.html", _g)]
    rs = RuleSet(user, {}, "H")
    out = [(r.name, path, err is not None) for r, path, err in rs.page_outputs()]
    assert out == [("build.py:_f", "index.html", False), ("build.py:_g", "feeds/atom.xml", False),
                   ("build.py:_g", None, True), ("build.py:_g", None, True)]
    assert rs.pages[0].kind == "page"


def test_pages_are_not_document_writers() -> None:
    rs = RuleSet([UserRule("page", "**", "**", _f)], {}, "H")
    assert rs.assign("a.md").writer.builtin == "markdown"
