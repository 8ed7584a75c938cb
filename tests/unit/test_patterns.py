"""sqldom.patterns: globs relative to content/, as in pathlib and .gitignore (SPEC section 5)."""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqldom.patterns import compile_glob, glob_filter, glob_match


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    # * stays within one folder
    ("*.md", "a.md", True),
    ("*.md", "x/a.md", False),
    ("x/*.md", "x/a.md", True),
    ("x/*.md", "x/y/a.md", False),
    ("*", "a", True),
    ("*", "a/b", False),
    ("a*b", "a/b", False),
    ("posts/*.md", "posts/.md", True),
    # **/ spans any number of folders, including none
    ("**/*.md", "a.md", True),
    ("**/*.md", "x/a.md", True),
    ("**/*.md", "x/y/a.md", True),
    ("**/*.md", "x/y/a.txt", False),
    ("**/*.md", "a.md/b", False),
    ("docs/**/*.md", "docs/a.md", True),
    ("docs/**/*.md", "docs/x/y/a.md", True),
    ("docs/**/*.md", "other/a.md", False),
    ("docs/**/*.md", "xdocs/a.md", False),
    ("**/index.html", "index.html", True),
    ("**/index.html", "a/b/index.html", True),
    ("**/index.html", "a/bindex.html", False),
    # ** alone matches everything
    ("**", "a", True),
    ("**", "a/b/c.d", True),
    ("**", ".hidden/x", True),
    # ?
    ("?.md", "a.md", True),
    ("?.md", "ab.md", False),
    ("?.md", ".md", False),
    ("a?b", "a/b", False),
    # character classes
    ("[abc].txt", "a.txt", True),
    ("[abc].txt", "c.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[a-c].txt", "b.txt", True),
    ("[!a].txt", "a.txt", False),
    ("[!a].txt", "b.txt", True),
    ("[!a].txt", "ab.txt", False),
    # literal dots and regex metacharacters are escaped
    ("a.md", "a.md", True),
    ("a.md", "aXmd", False),
    ("a+b.md", "a+b.md", True),
    ("a+b.md", "aab.md", False),
    ("(x)|y.md", "(x)|y.md", True),
    ("(x)|y.md", "y.md", False),
    ("a$^{1}.md", "a$^{1}.md", True),
    ("a\\d.md", "a\\d.md", True),
    ("a\\d.md", "a1.md", False),
    ("unclosed[.md", "unclosed[.md", True),
    # whole-path match, anchored at both ends
    ("a.md", "a.md.bak", False),
    ("a.md", "x/a.md", False),
    ("b/*.md", "a/b/c.md", False),
])
def test_glob_match(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


def test_negated_class_does_not_match_a_slash() -> None:
    # In pathlib and .gitignore a character class never matches the separator.
    assert not glob_match("a[!x]b", "a/b")
    assert not glob_match("docs[!.]*.md", "docs/a.md")


def test_glob_filter_keeps_order_and_only_matches() -> None:
    paths = ["z.md", "a.txt", "x/b.md", "a.md", "y/z/c.md"]
    assert glob_filter("**/*.md", paths) == ["z.md", "x/b.md", "a.md", "y/z/c.md"]
    assert glob_filter("*.md", paths) == ["z.md", "a.md"]
    assert glob_filter("nothing/*", paths) == []
    assert glob_filter("*", []) == []


def test_compile_glob_is_cached() -> None:
    assert compile_glob("**/*.md") is compile_glob("**/*.md")


# --- property: patterns with only ``*`` behave like fnmatch applied per folder -----------------

_PATH_ALPHABET = "ab./"
_paths = st.text(alphabet=_PATH_ALPHABET, max_size=10)
_patterns = st.text(alphabet=_PATH_ALPHABET + "*", max_size=8).filter(lambda p: "**" not in p)


def _oracle(pattern: str, path: str) -> bool:
    """``*`` never crosses ``/``: same number of segments, each matching by fnmatch."""
    ps, qs = pattern.split("/"), path.split("/")
    return len(ps) == len(qs) and all(fnmatch.fnmatchcase(q, p) for p, q in zip(ps, qs, strict=True))


@given(_patterns, _paths)
def test_single_star_patterns_agree_with_segmentwise_fnmatch(pattern: str, path: str) -> None:
    assert glob_match(pattern, path) == _oracle(pattern, path)


@given(st.text(alphabet="ab.*", max_size=6).filter(lambda p: "**" not in p),
       st.text(alphabet="ab.", max_size=8))
def test_without_slashes_star_is_fnmatch(pattern: str, name: str) -> None:
    assert glob_match(pattern, name) == fnmatch.fnmatchcase(name, pattern)


@given(st.lists(st.text(alphabet="ab", min_size=1, max_size=3), max_size=4),
       st.text(alphabet="ab", min_size=1, max_size=3))
def test_double_star_slash_spans_any_number_of_folders(folders: list[str], stem: str) -> None:
    path = "/".join([*folders, f"{stem}.md"])
    assert glob_match("**/*.md", path)
    assert glob_match(f"**/{stem}.md", path)
    assert not glob_match("**/*.txt", path)


_segment = st.text(alphabet="ab.", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
_pattern_segment = st.text(alphabet="ab.*", min_size=1, max_size=3).filter(
    lambda s: "**" not in s and s not in (".", ".."))


@given(st.lists(_pattern_segment, min_size=1, max_size=3), st.lists(_segment, min_size=1, max_size=3))
def test_single_star_patterns_agree_with_pathlib_full_match(pattern_parts: list[str], path_parts: list[str]) -> None:
    # An absolute pattern makes PurePosixPath.match compare the whole path, segment by segment.
    pattern, path = "/".join(pattern_parts), "/".join(path_parts)
    assert glob_match(pattern, path) == PurePosixPath("/" + path).match("/" + pattern)
