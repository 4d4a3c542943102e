"""The JSON serializer writes a non-str map key as JSON names it (``1`` as ``"1"``,
``True`` as ``"true"``), and refuses a map whose keys would collide there: one value
would be lost without a word."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit import SerializationError
from brokerkit._serializers import decode_body, encode_body

keys = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.5, 1.0, -0.0, 1e16])
    | st.sampled_from(["", "1", "0", "true", "false", "null", "0.5", "1.0", "-0.0", "1e+16", "a"])
)
bodies = st.recursive(
    st.none() | st.integers(-3, 3) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=15,
)


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def _as_json_reads_it(value: Any) -> tuple[Any, bool]:
    """``value`` as JSON gives it back, and whether two keys of one map collide there."""
    if isinstance(value, list):
        items = [_as_json_reads_it(item) for item in value]
        return [item for item, _ in items], any(c for _, c in items)
    if isinstance(value, dict):
        read = {_json_key(k): _as_json_reads_it(v) for k, v in value.items()}
        collides = len(read) < len(value) or any(c for _, c in read.values())
        return {k: v for k, (v, _) in read.items()}, collides
    return value, False


@given(bodies)
def test_json_keeps_every_value_or_refuses_keys_that_collide(body: Any) -> None:
    expected, collides = _as_json_reads_it(body)
    if collides:
        with pytest.raises(SerializationError, match="both become the JSON key"):
            encode_body(body, "json")
    else:
        payload, content_type = encode_body(body, "json")
        assert decode_body(payload, content_type) == expected


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({1: "a", "1": "b"}, "1 and '1'"),
        ({True: 1, "true": 2}, "True and 'true'"),
        ({"x": [{None: 1, "null": 2}]}, "None and 'null'"),
        ({1.0: "a", "1.0": "b"}, "1.0 and '1.0'"),
    ],
)
def test_colliding_keys_are_refused_by_name_and_nothing_is_published(body: Any, named: str) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(SerializationError) as raised:
            broker.publish_many("orders", [{"ok": 1}, body])
        assert broker.inspect("orders").length == 0
    text = str(raised.value)
    assert named in text
    assert "str keys" in text  # what is valid


def test_distinct_non_str_keys_are_written_as_json_names_them() -> None:
    payload, content_type = encode_body({2: "a", True: "b", None: "c", 2.5: "d"}, "json")
    assert decode_body(payload, content_type) == {"2": "a", "true": "b", "null": "c", "2.5": "d"}
