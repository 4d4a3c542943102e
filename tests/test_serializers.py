"""Bodies: bytes untouched, str as UTF-8, other values through JSON or msgpack; never pickle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit import SerializationError
from brokerkit._serializers import BINARY, TEXT, decode_body, encode_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_json_values_round_trip(value: Any) -> None:
    payload, content_type = encode_body(value, "json")
    assert content_type == (TEXT if isinstance(value, str) else "application/json")
    assert decode_body(payload, content_type) == value


@given(json_values.filter(lambda v: not isinstance(v, float)))
def test_msgpack_values_round_trip(value: Any) -> None:
    payload, content_type = encode_body(value, "msgpack")
    assert content_type == (TEXT if isinstance(value, str) else "application/msgpack")
    assert decode_body(payload, content_type) == value


@given(st.binary())
def test_bytes_pass_through_untouched(value: bytes) -> None:
    payload, content_type = encode_body(value, "json")
    assert (payload, content_type) == (value, BINARY)
    assert decode_body(payload, content_type) == value


@given(st.text())
def test_text_is_utf8_including_non_bmp_and_empty(value: str) -> None:
    payload, content_type = encode_body(value, "msgpack")
    assert (payload, content_type) == (value.encode("utf-8"), TEXT)
    assert decode_body(payload, content_type) == value


def test_a_json_string_body_can_be_forced_with_a_content_type() -> None:
    payload, content_type = encode_body("hi", "json", "application/json")
    assert payload == b'"hi"'
    assert decode_body(payload, content_type) == "hi"


def test_a_custom_content_type_carries_bytes() -> None:
    assert encode_body(b"<x/>", "json", "application/xml") == (b"<x/>", "application/xml")
    with pytest.raises(SerializationError, match="no serializer for content type"):
        encode_body({"a": 1}, "json", "application/xml")


class Pickleable:
    """An object pickle could carry; brokerkit must refuse it."""


@pytest.mark.parametrize("body", [Pickleable(), {1, 2}, float("nan"), {"when": object()}])
def test_unserializable_bodies_raise_and_publish_nothing(body: Any) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(SerializationError, match="cannot encode"):
            broker.publish_many("orders", [{"ok": 1}, body])
        assert broker.inspect("orders").length == 0


def test_non_utf8_text_payload_raises_on_decode() -> None:
    with pytest.raises(SerializationError, match="not valid UTF-8"):
        decode_body(b"\xff\xfe", TEXT)
