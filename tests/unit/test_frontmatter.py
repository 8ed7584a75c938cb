"""simple_front_matter: either PyYAML's exact answer or None."""

from __future__ import annotations

import string
from typing import Any

import pytest
import yaml
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from sqldom.transforms.frontmatter import simple_front_matter
from sqldom.transforms.markdown import _jsonable


def pyyaml(raw: str) -> Any:
    """What split_front_matter computes (before its own dict check)."""
    return _jsonable(yaml.load(raw, Loader=yaml.CSafeLoader)) if raw.strip() else {}


def assert_same(got: dict[str, Any], raw: str) -> None:
    want = pyyaml(raw)   # must not raise: the fast path said it was sure
    assert isinstance(want, dict)
    assert list(got.items()) == list(want.items())
    assert [type(k) for k in got] == [type(k) for k in want]
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


BOOL_NULL = ("yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF "
             "null Null NULL ~").split()
GOOD_KEYS = ["title", "date", "summary", "a", "_", "_x", "a-b", "k9", "draft", "y", "n", "Ontario", "nulls"]
ODD_KEYS = ["", "1", "12", "-a", "a b", "a:b", "? a", "<<", "=", "#c", "'q'", '"q"', " a", "a\t", "x" * 1025,
            "é", ".inf", "2023-12-25"]

# characters for quoted and plain values: the ordinary ones plus everything YAML treats specially
SPECIAL = "\"'\\#:-?[]{},&*!|>%@` \t\x00\x07\x1b\x7f\x85\xa0\u2028\u2029\ufeff\ufffe\ud800\r"
UNICODE = "éü中😀"
VALUE_CHARS = string.ascii_letters[:8] + string.digits[:3] + ".,;!?()'/+=&_- " + SPECIAL + UNICODE

texts = st.text(alphabet=VALUE_CHARS, max_size=12)
keys = st.one_of(st.sampled_from(GOOD_KEYS), st.sampled_from(BOOL_NULL), st.sampled_from(ODD_KEYS),
                 st.text(alphabet="aZ_-1:. #", min_size=1, max_size=5))
dates = st.one_of(
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
              st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)),
    st.sampled_from(["2023-12-25", "2023-02-30", "2024-02-29", "2023-02-29", "2023-1-5", "0000-01-01",
                     "0001-01-01", "2023-12-25T10:00:00", "2023-12-25 10:00:00", "2023-12-25Z", "20231225"]),
)
ints = st.one_of(
    st.integers(-5, 10**20).map(str),
    st.sampled_from(["0", "00", "007", "08", "12", "-3", "+5", "1_000", "0x1f", "0b101", "1:30", "1.5", "1e3",
                     "123456789012345678", "1234567890123456789", ".5", "5."]),
)
plain = st.one_of(
    st.sampled_from(BOOL_NULL + [".inf", ".NaN", "y", "n", "Yes!", "nope", "a, b", "hello world", "a: b", "a #b",
                                 "x#y", "it's", "a - b", "what?", "a:", "!tag", "&anchor", "*alias", "|", ">",
                                 "-", "- a", "? a", "[a]", "{a: 1}", "%x", "@x", "`x`", "é", "naïve", "=", "<<"]),
    texts,
    st.text(alphabet=string.ascii_letters[:6] + " .,;!?()'/+=&_-", min_size=1, max_size=12),
)
quoted = st.one_of(texts.map(lambda t: f'"{t}"'), texts.map(lambda t: f"'{t}'"),
                   st.sampled_from(['""', "''", '"a\\"b"', "'a''b'", '"a\\nb"', '"a" # c', "'a' x", '"a', "'a"]))
# one special character in an otherwise ordinary value, quoted or plain
one_special = st.builds(lambda q, a, c, b: f"{q}{a}{c}{b}{q}", st.sampled_from(['"', "'", "", "x"]),
                        st.text(alphabet="ab ", max_size=3), st.sampled_from(SPECIAL + UNICODE),
                        st.text(alphabet="ab ", max_size=3))
values = st.one_of(quoted, dates, ints, plain, one_special, st.just(""))
separators = st.sampled_from([": ", ": ", ": ", ":  ", ":", ":\t", " : ", ": \t"])
trailing = st.sampled_from(["", "", "", " ", "   ", "\t", " # comment", "#x", "\r", " :"])
pair_lines = st.builds(lambda k, s, v, t: k + s + v + t, keys, separators, values, trailing)
other_lines = st.sampled_from(["", " ", "# comment", "  indented: x", "  continued", "- item", "---", "...",
                               "\t", "key:", "key: |", "key: >", "key:  # c", "? a", "%YAML 1.1", "&a x: 1",
                               "title: a\rb: c"])
# lines entirely inside the subset
SAFE_QUOTED = string.ascii_letters[:10] + string.digits[:4] + " #:-?[]{},&*!|>%@`" + "éü中😀\xa0"
KEY_START = string.ascii_letters + "_"
PLAIN_START = string.ascii_letters
PLAIN_REST = string.ascii_letters[:10] + string.digits[:4] + " .,;!?()'/+=&_-"
good_keys = st.builds(lambda a, b: a + b, st.sampled_from(KEY_START),
                      st.text(alphabet=KEY_START[:8] + "_-09", max_size=8)).map(
    lambda k: k + "_" if k in BOOL_NULL else k)
good_values = st.one_of(
    st.text(alphabet=SAFE_QUOTED + "'", max_size=10).map(lambda t: f'"{t}"'),
    st.text(alphabet=SAFE_QUOTED + '"\\', max_size=10).map(lambda t: f"'{t}'"),
    st.dates().map(lambda d: d.isoformat()),
    st.integers(0, 10**18 - 1).map(str),
    st.builds(lambda a, b: (a + b).rstrip(" "), st.sampled_from(PLAIN_START),
              st.text(alphabet=PLAIN_REST, max_size=10)).map(lambda v: v + "_" if v in BOOL_NULL else v),
)
good_lines = st.builds(lambda k, sp, v, tr: f"{k}:{sp}{v}{tr}", good_keys, st.sampled_from([" ", "  "]),
                       good_values, st.sampled_from(["", " ", "  "]))


@st.composite
def near_lines(draw: st.DrawFn) -> str:
    """A line of the subset with one part (key, separator, value or end) drawn from the odd ones."""
    key, sep, value, tail = draw(good_keys), ": ", draw(good_values), ""
    which = draw(st.integers(0, 3))
    if which == 0:
        key = draw(keys)
    elif which == 1:
        sep = draw(separators)
    elif which == 2:
        value = draw(st.one_of(values, one_special))
    else:
        tail = draw(trailing)
    return key + sep + value + tail


odd_breaks = st.sampled_from(["\r\n", "\r", "\x85", "\u2028", "\x0b", "\x0c", "\x1c", "\n\n"])


@st.composite
def documents(draw: st.DrawFn) -> str:
    body = []
    for _ in range(draw(st.integers(0, 4))):
        # mostly lines of the subset, so that a whole document often is, with odd lines and breaks mixed in
        kind = draw(st.integers(0, 19))
        line = draw(good_lines if kind < 8 else near_lines() if kind < 18 else pair_lines if kind < 19
                    else other_lines)
        body.append((line, "\n" if draw(st.integers(0, 19)) else draw(odd_breaks)))
    if body and draw(st.integers(0, 4)) == 0:
        key = body[0][0].split(":")[0]
        body.append((key + ": " + draw(st.one_of(good_values, values)), "\n"))   # the first key again
    raw = "".join(line + br for line, br in body)
    if draw(st.booleans()):
        raw = raw.removesuffix("\n")   # the last line may lack its newline
    return raw


@settings(max_examples=500, deadline=None)
@given(documents())
@example("a: 1\nb: 2\na: 3\n")
@example("title: x\ntitle: y\n")
@example("k: 2023-02-30\n")
@example("k: 0000-01-01\n")
@example("x" * 1000 + ": 1\n")
@example("x" * 1025 + ": 1\n")
def test_fast_path_equals_pyyaml(raw: str) -> None:
    got = simple_front_matter(raw)
    event("taken" if got is not None else "declined")
    if got is not None:
        assert_same(got, raw)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_never_raises_on_any_text(raw: str) -> None:
    got = simple_front_matter(raw)
    if got is not None:
        assert_same(got, raw)


# every character below U+0100 and the notable ones above, in each place a line has
CHARS = [chr(c) for c in range(0x100)] + list("\u2028\u2029\u200b\u3000\ufeff\ufffd\ufffe\uffff\ud800\udfff"
                                             "\U0001f600\U0010ffff") + ["\r\n", "''", '""', ": ", " #", "\\n"]
PLACES = ['k: "a{}b"\n', "k: 'a{}b'\n", 'k: "{}"\n', "k: '{}'\n", "k: a{}b\n", "k: a{}\n", "k: {}a\n",
          "k{}: a\n", "{}k: a\n", "k:{}a\n", "k: a{}\nz: 1\n", "k: 1{}\n", "k: 2023-12-25{}\n", "k: {}1\n"]


def test_every_character_in_every_place() -> None:
    taken = 0
    for place in PLACES:
        for c in CHARS:
            raw = place.format(c)
            got = simple_front_matter(raw)
            if got is not None:
                taken += 1
                assert_same(got, raw)
    assert taken == 1271   # how much of this grid the subset covers; changes only with the subset


# documents entirely inside the subset: the fast path must take every one of them
@settings(max_examples=150, deadline=None)
@given(st.lists(good_lines, min_size=1, max_size=6), st.booleans())
def test_fast_path_takes_the_subset(body: list[str], final_newline: bool) -> None:
    raw = "\n".join(body) + ("\n" if final_newline else "")
    got = simple_front_matter(raw)
    assert got is not None, raw
    assert_same(got, raw)


def test_typical_document() -> None:
    raw = ('title: "Rendering the Modern Graph"\n'
           "date: 2023-12-25\n"
           'summary: "Field service into coverage review image?"\n')
    assert simple_front_matter(raw) == {
        "title": "Rendering the Modern Graph",
        "date": "2023-12-25",
        "summary": "Field service into coverage review image?",
    }


@pytest.mark.parametrize(("raw", "expected"), [
    ("title: 'It is: here # not a comment'\n", {"title": "It is: here # not a comment"}),
    ('title: "say \'hi\'"\n', {"title": "say 'hi'"}),
    ("weight: 10\n", {"weight": 10}),
    ("weight: 0\n", {"weight": 0}),
    ("tags: a, b\n", {"tags": "a, b"}),
    ("author: Jane Doe   \n", {"author": "Jane Doe"}),
    ("note: it's fine (mostly)!\n", {"note": "it's fine (mostly)!"}),
    ("y: n\n", {"y": "n"}),                                      # PyYAML has no y/n booleans
    ("date: 2024-02-29", {"date": "2024-02-29"}),                # no final newline
    ("a: 1\nb: 2\na: x\n", {"a": "x", "b": 2}),                  # the last value, the first position
    ("", {}),
    ("  \n\n", {}),
])
def test_fast_path_takes(raw: str, expected: dict[str, Any]) -> None:
    got = simple_front_matter(raw)
    assert got == expected
    assert got is not None
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]
    assert_same(got, raw)


@pytest.mark.parametrize("raw", [
    "draft: no\n",                   # a bool
    "draft: True\n",
    "parent: null\n",                # None
    "parent: ~\n",
    "yes: 1\n",                      # the key would be "True"
    "null: 1\n",
    "date: 2023-02-30\n",            # PyYAML raises ValueError
    "date: 2023-1-5\n",              # a str, but not the fast path's shape
    "when: 2023-12-25 10:00:00\n",   # a datetime
    "weight: 007\n",                 # octal: 7
    "weight: 1_000\n",               # 1000
    "weight: -3\n",
    "ratio: 1.5\n",
    "# a comment\ntitle: x\n",
    "title: x # a comment\n",
    "title: x\n\nsummary: y\n",      # a blank line
    "tags:\n  - a\n",
    "title: x\r\n",
    "title: x\x85y\n",
    "title:\tx\n",
    "title: a: b\n",
    'title: "a \\"b\\""\n',
    "title: 'it''s'\n",
    "title: \"tab\tin\"\n",
    "title: \"a\x85b\"\n",           # NEL is a line break: PyYAML gives "a b"
    "title: 'a\x85b'\n",
    "title: a*b\n",                 # outside the subset, though PyYAML would give "a*b"
    "x" * 1025 + ": 1\n",            # libyaml's limit on a simple key
])
def test_fast_path_declines(raw: str) -> None:
    assert simple_front_matter(raw) is None
