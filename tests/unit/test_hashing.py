"""sqldom.hashing: the one definition of "same" (xxh3-128, hex; canonical JSON)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sqldom.hashing import ABSENT, CHUNK, canonical_json, hash_bytes, hash_file, hash_json, hash_text

HEX32 = re.compile(r"[0-9a-f]{32}\Z")


def test_hash_bytes_is_xxh3_128_hex() -> None:
    # Published XXH3-128 value of the empty input (seed 0).
    assert hash_bytes(b"") == "99aa06d3014798d86001c324468d497f"
    h = hash_bytes(b"hello")
    assert HEX32.match(h)
    assert h == hash_bytes(b"hello")
    assert h != hash_bytes(b"hello ")


def test_hash_text_is_hash_of_utf8_bytes() -> None:
    assert hash_text("héllo ✓") == hash_bytes("héllo ✓".encode())


def test_absent_is_not_a_hash() -> None:
    assert not HEX32.match(ABSENT)


@given(st.binary(max_size=2000))
def test_hash_bytes_shape(data: bytes) -> None:
    assert HEX32.match(hash_bytes(data))


def test_canonical_json_is_key_order_independent() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": None}, "c": "é"}
    b = {"c": "é", "a": {"x": None, "y": [1, 2]}, "b": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == '{"a":{"x":null,"y":[1,2]},"b":1,"c":"é"}'
    assert hash_json(a) == hash_json(b)


def test_canonical_json_distinguishes_values_and_list_order() -> None:
    assert hash_json([1, 2]) != hash_json([2, 1])
    assert hash_json({"a": 1}) != hash_json({"a": "1"})
    assert hash_json(None) != hash_json("")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=4), _json, max_size=6))
def test_hash_json_ignores_insertion_order(d: dict) -> None:  # type: ignore[type-arg]
    reordered = dict(reversed(list(d.items())))
    assert hash_json(d) == hash_json(reordered)


def test_hash_file_equals_hash_bytes_for_a_file_larger_than_a_chunk(tmp_path: Path) -> None:
    data = bytes(range(256)) * ((CHUNK * 3) // 256) + b"tail-bytes"
    assert len(data) > CHUNK * 2
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    assert hash_file(str(p)) == (hash_bytes(data), len(data))


def test_hash_file_small_and_empty(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert hash_file(str(p)) == (hash_bytes(b"abc"), 3)
    p.write_bytes(b"")
    assert hash_file(str(p)) == (hash_bytes(b""), 0)


def test_hash_file_exactly_one_chunk(tmp_path: Path) -> None:
    data = b"x" * CHUNK
    p = tmp_path / "one"
    p.write_bytes(data)
    assert hash_file(str(p)) == (hash_bytes(data), CHUNK)
