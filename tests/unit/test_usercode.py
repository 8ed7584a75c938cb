"""sqldom.usercode: loading build.py and fingerprinting each function with what it uses."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from sqldom.errors import ConfigError
from sqldom.usercode import fingerprint_functions, load

BASE = textwrap.dedent('''
    import sqldom
    from json import dumps

    PREFIX = "Title: "
    UNUSED_CONSTANT = 1


    def helper(x):
        return PREFIX + x.strip()


    def deep_helper(x):
        return helper(x)


    @sqldom.parser("**/*.md")
    def parse_md(source):
        return {"title": deep_helper(source.text)}


    @sqldom.writer("**/*.md", output="{dir}{stem}.html")
    def write_md(doc, site):
        return dumps(doc.facts)


    def unused():
        return UNUSED_CONSTANT
''')


def fp(src: str) -> dict[str, str]:
    return fingerprint_functions(ast.parse(src))


def changed(before: str, after: str) -> set[str]:
    a, b = fp(before), fp(after)
    assert a.keys() == b.keys()
    return {name for name in a if a[name] != b[name]}


def test_every_top_level_function_has_a_fingerprint() -> None:
    assert set(fp(BASE)) == {"helper", "deep_helper", "parse_md", "write_md", "unused"}


def test_editing_a_function_changes_its_fingerprint_only() -> None:
    after = BASE.replace("return dumps(doc.facts)", "return dumps(doc.facts, indent=1)")
    assert changed(BASE, after) == {"write_md"}


def test_editing_a_helper_changes_the_functions_that_use_it() -> None:
    after = BASE.replace("x.strip()", "x.rstrip()")
    assert changed(BASE, after) == {"helper", "deep_helper", "parse_md"}


def test_editing_a_constant_changes_the_functions_that_use_it() -> None:
    after = BASE.replace('PREFIX = "Title: "', 'PREFIX = "T: "')
    assert changed(BASE, after) == {"helper", "deep_helper", "parse_md"}


def test_editing_an_unrelated_function_or_constant_changes_nothing_else() -> None:
    assert changed(BASE, BASE.replace("return UNUSED_CONSTANT", "return UNUSED_CONSTANT + 1")) == {"unused"}
    assert changed(BASE, BASE.replace("UNUSED_CONSTANT = 1", "UNUSED_CONSTANT = 2")) == {"unused"}


def test_an_import_the_function_uses_counts() -> None:
    after = BASE.replace("from json import dumps", "from marshal import dumps")
    assert changed(BASE, after) == {"write_md"}


def test_decorator_arguments_count() -> None:
    after = BASE.replace('output="{dir}{stem}.html"', 'output="{dir}{stem}.htm"')
    assert changed(BASE, after) == {"write_md"}


def test_comments_whitespace_and_blank_lines_do_not_count() -> None:
    after = BASE.replace("def helper(x):\n", "# a comment\n\n\ndef helper(x):   # trailing comment\n")
    after = after.replace("return PREFIX + x.strip()", "return PREFIX+x.strip()  # why")
    after = after.replace("return dumps(doc.facts)", "return dumps( doc.facts )")
    after = "\n\n# header comment\n" + after
    assert changed(BASE, after) == set()


def test_moving_definitions_around_changes_nothing() -> None:
    tree = ast.parse(BASE)
    tree.body.reverse()
    assert fingerprint_functions(tree) == fp(BASE)


def test_attribute_use_of_a_module_counts() -> None:
    src = "import os\n\ndef f():\n    return os.sep\n\ndef g():\n    return 1\n"
    after = src.replace("import os", "import posixpath as os")
    assert changed(src, after) == {"f"}


def test_helpers_under_a_top_level_if_count() -> None:
    src = "import sys\nif sys.platform:\n    def h():\n        return 1\n\ndef f():\n    return h()\n\ndef g():\n    return 2\n"
    after = src.replace("return 1", "return 3")
    assert changed(src, after) == {"f"}


def test_classes_used_by_a_function_count() -> None:
    src = "class K:\n    X = 1\n\ndef f():\n    return K.X\n\ndef g():\n    return 0\n"
    assert changed(src, src.replace("X = 1", "X = 2")) == {"f"}


def test_recursive_and_mutually_recursive_functions() -> None:
    src = "def a(n):\n    return b(n - 1) if n else 0\n\ndef b(n):\n    return a(n)\n\ndef c():\n    return c()\n"
    assert changed(src, src.replace("n - 1", "n - 2")) == {"a", "b"}


# --- load ------------------------------------------------------------------------------------------

def _write(tmp_path: Path, text: str | bytes, name: str = "build.py") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(textwrap.dedent(text))
    return p


def test_load_collects_rules_from_decorators(tmp_path: Path) -> None:
    code = BASE + textwrap.dedent('''

        @sqldom.page("index.html")
        def index(site):
            return "x"
    ''')
    uc = load(_write(tmp_path, code), "build.py")
    assert uc.path == "build.py"
    assert [(r.kind, r.pattern, r.output, r.name) for r in uc.rules] == [
        ("parser", "**/*.md", None, "parse_md"),
        ("writer", "**/*.md", "{dir}{stem}.html", "write_md"),
        ("page", "index.html", "index.html", "index"),
    ]
    assert uc.rules[0].func(type("S", (), {"text": "  hi "})()) == {"title": "Title: hi"}
    assert set(uc.fingerprints) >= {"parse_md", "write_md", "index", "helper"}
    assert uc.fingerprints == fp(code)


def test_load_without_rules(tmp_path: Path) -> None:
    uc = load(_write(tmp_path, "X = 1\n"), "build.py")
    assert uc.rules == [] and uc.fingerprints == {}


def test_syntax_error_is_a_config_error_with_path_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "import sqldom\n\ndef f(:\n    pass\n")
    with pytest.raises(ConfigError) as ei:
        load(p, "build.py")
    e = ei.value
    assert e.path == "build.py" and e.line == 3
    assert "syntax" in e.message.lower()
    assert e.headline().startswith("build.py:3: ")
    assert e.exit_code == 2


def test_indentation_error_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "x = 1\ny = 2\n  z = 3\n")
    with pytest.raises(ConfigError) as ei:
        load(p, "site/build.py")
    assert (ei.value.path, ei.value.line) == ("site/build.py", 3)


def test_exception_at_import_is_a_config_error_with_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "import sqldom\nX = 1\n\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigError) as ei:
        load(p, "build.py")
    e = ei.value
    assert (e.path, e.line) == ("build.py", 4)
    assert "RuntimeError" in e.message and "boom" in e.message


def test_exception_in_a_function_called_at_import_names_a_user_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "def f():\n    return 1 / 0\n\nVALUE = f()\n")
    with pytest.raises(ConfigError) as ei:
        load(p, "build.py")
    assert ei.value.line in (2, 4)
    assert "ZeroDivisionError" in ei.value.message


def test_bad_decorator_argument_is_a_config_error_with_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "import sqldom\n\n\n@sqldom.writer('')\ndef w(doc, site):\n    return ''\n")
    with pytest.raises(ConfigError) as ei:
        load(p, "build.py")
    assert ei.value.line == 4


def test_import_of_a_missing_module_is_a_config_error(tmp_path: Path) -> None:
    p = _write(tmp_path, "import sqldom\nimport no_such_module_sqldom_test\n")
    with pytest.raises(ConfigError) as ei:
        load(p, "build.py")
    assert ei.value.line == 2 and "no_such_module_sqldom_test" in ei.value.message


def test_not_utf8_is_a_config_error_with_line(tmp_path: Path) -> None:
    p = _write(tmp_path, b"x = 1\ny = '\xff'\n")
    with pytest.raises(ConfigError) as ei:
        load(p, "build.py")
    assert (ei.value.path, ei.value.line) == ("build.py", 2)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path / "nope.py", "nope.py")
    assert ei.value.path == "nope.py"


def test_a_failed_load_does_not_leak_rules_into_the_next(tmp_path: Path) -> None:
    bad = _write(tmp_path, "import sqldom\n@sqldom.parser('*.md')\ndef p(s):\n    return {}\nraise ValueError('x')\n",
                 name="bad.py")
    with pytest.raises(ConfigError):
        load(bad, "bad.py")
    good = _write(tmp_path, "import sqldom\n@sqldom.page('a.html')\ndef a(site):\n    return ''\n", name="good.py")
    uc = load(good, "good.py")
    assert [r.name for r in uc.rules] == ["a"]


def test_decorators_outside_load_register_nothing(tmp_path: Path) -> None:
    import sqldom

    @sqldom.parser("*.x")
    def stray(source: object) -> dict[str, str]:
        return {}

    uc = load(_write(tmp_path, "import sqldom\n"), "build.py")
    assert uc.rules == []
