"""Bodies: bytes untouched, str as UTF-8, other values through JSON or msgpack; never pickle."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit import InvalidMessage, SerializationError
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


@given(
    st.binary(),
    st.sampled_from(["application/json", "application/msgpack", "application/json; x=1"]),
    st.sampled_from(["json", "msgpack"]),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_bytes_under_a_serializers_content_type_pass_through_untouched(
    value: bytes, content_type: str, serializer: str, kind: type
) -> None:
    """Pre-encoded bytes (JSON from orjson, msgpack from another library) keep their
    bytes and the content type given: kombu's rule, and DESIGN.md's "bytes pass
    through untouched"."""
    assert encode_body(kind(value), serializer, content_type) == (value, content_type)


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
    with pytest.raises(SerializationError, match=r"does not decode as text.*Message.payload"):
        decode_body(b"\xff\xfe", TEXT)


# -- hostile payloads: decoding raises SerializationError and nothing else ---------------

_DEEP = 100_000
_HOSTILE_PAYLOADS = {
    "nested JSON": (b"[" * _DEEP + b"]" * _DEEP, "application/json"),
    "unclosed JSON": (b'{"a":' * _DEEP, "application/json"),
    "JSON with a number too long": (b"1" * 10_000, "application/json"),
    "JSON not UTF-8": (b'{"a":"\xff"}', "application/json"),
    "nested msgpack": (b"\x91" * _DEEP + b"\xc0", "application/msgpack"),
    "truncated msgpack": (b"\xdb\xff\xff\xff\xff", "application/msgpack"),
    "msgpack with an array as map key": (b"\x81\x91\x01\x02", "application/msgpack"),
    "text not UTF-8": (b"\xc3\x28", TEXT),
    "text in an unknown charset": (b"hi", "text/plain; charset=klingon"),
    "text in a bytes codec": (b"hi", "text/plain; charset=base64"),
}


@pytest.mark.parametrize(
    ("payload", "content_type"), _HOSTILE_PAYLOADS.values(), ids=_HOSTILE_PAYLOADS.keys()
)
def test_a_hostile_payload_raises_serialization_error_naming_the_type(
    payload: bytes, content_type: str
) -> None:
    with pytest.raises(SerializationError) as raised:
        decode_body(payload, content_type)
    assert content_type in str(raised.value)


_content_types = st.sampled_from(
    ["application/json", "application/msgpack", TEXT, "text/csv", "application/x-other", "x"]
)


@given(st.binary(), _content_types)
def test_any_payload_decodes_or_raises_serialization_error(
    payload: bytes, content_type: str
) -> None:
    with contextlib.suppress(SerializationError):
        decode_body(payload, content_type)


# -- content types with parameters ------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset=utf-8", "text/plain;charset=UTF-8", "Text/Plain", "text/csv",
     'text/plain; charset="utf-8"', "text/plain; charset=latin-1", "text/plain; charset=utf-16"],
)  # fmt: skip
def test_a_str_body_with_a_text_content_type_round_trips_as_text(content_type: str) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("notes", "héllo", content_type=content_type)
        delivery = broker.subscribe("notes").receive(timeout=1)
        assert delivery is not None
        assert (delivery.body, delivery.content_type) == ("héllo", content_type)


def test_a_text_content_type_with_a_charset_that_cannot_hold_the_text_is_refused() -> None:
    with pytest.raises(
        SerializationError, match="cannot be encoded as 'text/plain; charset=ascii'"
    ):
        encode_body("héllo", "json", "text/plain; charset=ascii")
    with pytest.raises(SerializationError, match="unknown charset 'klingon'"):
        encode_body("hi", "json", "text/plain; charset=klingon")
    # a codec Python knows that encodes nothing at all
    with pytest.raises(SerializationError, match="unknown charset 'undefined'"):
        encode_body("hi", "json", "text/plain; charset=undefined")


@pytest.mark.parametrize("content_type", [7, b"text/plain", "", "  ", "text/\ud800"])
def test_a_content_type_that_cannot_be_stored_is_refused(content_type: Any) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(InvalidMessage, match="content type"):
            broker.publish("notes", b"x", content_type=content_type)
        assert broker.inspect("notes").length == 0


# -- msgpack: what publish accepts, consume returns -------------------------------------


@pytest.mark.parametrize("body", [{(1, 2): "tuple key"}, {"a": [{(1,): 1}]}])
def test_a_msgpack_map_key_that_cannot_be_decoded_back_is_refused(body: Any) -> None:
    with brokerkit.connect("memory://", serializer="msgpack") as broker:
        with pytest.raises(SerializationError, match=r"would not decode back.*map keys"):
            broker.publish("orders", body)
        assert broker.inspect("orders").length == 0


@pytest.mark.parametrize("body", [{1: "int key"}, {b"k": 1}, {None: 1, True: 2, 1.5: 3}])
def test_msgpack_map_keys_that_decode_back_are_kept(body: Any) -> None:
    payload, content_type = encode_body(body, "msgpack")
    assert decode_body(payload, content_type) == body


# -- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"k": "\ud800"}, {"\udfff": "v"}, {"trace": "a\udc80b"}],
    ids=["value", "name", "inside a value"],
)
def test_a_header_with_a_lone_surrogate_is_refused_and_nothing_published(
    headers: dict[str, str],
) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(InvalidMessage, match="lone surrogate"):
            broker.publish("orders", "x", headers=headers)
        assert broker.inspect("orders").length == 0


@pytest.mark.parametrize(
    "name", ["x-dead-letter-reason", "X-Dead-Letter-Reason", "x-dead-letter-anything"]
)
def test_a_forged_dead_letter_header_is_refused(name: str) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(InvalidMessage, match=r"reserved.*only by the broker"):
            broker.publish("orders", "x", headers={name: "rejected"})
        assert broker.inspect("orders").length == 0


def test_the_broker_still_writes_dead_letter_headers() -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("orders", "x", headers={"x-original-trace": "t"})
        delivery = broker.subscribe("orders").receive(timeout=1)
        assert delivery is not None
        delivery.nack(requeue=False)
        dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=1)
        assert dead is not None and dead.headers["x-dead-letter-reason"] == "rejected"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"1e400", math.inf), (b"-Infinity", -math.inf), (b"[NaN]", [math.nan])],
    ids=["past-range", "infinity", "nan"],
)
def test_json_another_program_wrote_with_non_finite_numbers_decodes_to_floats(
    payload: bytes, expected: Any
) -> None:
    """As the module says: Python's json reads them; encoding them is refused."""
    got = decode_body(payload, "application/json")
    if isinstance(expected, list):
        assert len(got) == 1 and math.isnan(got[0])
    else:
        assert got == expected
    with pytest.raises(SerializationError, match="cannot encode"):
        encode_body(got, "json")
