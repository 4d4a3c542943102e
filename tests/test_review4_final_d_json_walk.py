"""The JSON key check looks into every container however deep (past the depth its
walk recurses to), and names keys as json.dumps writes them (int and float
subclasses as their numbers)."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit import SerializationError
from brokerkit._serializers import _WALK_DEPTH, decode_body, encode_body


def _nested(depth: int, leaf: Any, container: str) -> Any:
    body = leaf
    for level in range(depth):
        body = [body] if container == "list" else {f"k{level}": body, "n": level}
    return body


@pytest.mark.parametrize("container", ["list", "dict"])
@given(depth=st.integers(0, _WALK_DEPTH * 3))
def test_colliding_keys_are_refused_at_any_depth(container: str, depth: int) -> None:
    with pytest.raises(SerializationError, match="both become the JSON key"):
        encode_body(_nested(depth, {1: "a", "1": "b"}, container), "json")
    payload, content_type = encode_body(_nested(depth, {1: "a", "2": "b"}, container), "json")
    assert decode_body(payload, content_type) == _nested(depth, {"1": "a", "2": "b"}, container)


class Level(enum.IntEnum):
    ONE = 1


class Ratio(float):
    pass


@pytest.mark.parametrize(
    ("body", "named"),
    [({Level.ONE: 1, "1": 2}, "'1'"), ({Ratio(0.5): 1, "0.5": 2}, "'0.5'")],
)
def test_a_key_of_a_number_subclass_is_named_as_json_writes_it(body: Any, named: str) -> None:
    with pytest.raises(SerializationError, match=f"the JSON key {named}"):
        encode_body(body, "json")
