"""The Redis envelope: what brokerkit writes comes back intact, and anything another
program wrote decodes as a raw message instead of raising."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit._message import Message
from brokerkit.backends.redis import _envelope

text = st.text(st.characters(blacklist_categories=("Cs",)))
messages = st.builds(
    Message,
    id=st.text("0123456789abcdef", min_size=1, max_size=28),
    topic=st.just("orders"),
    payload=st.binary(),
    content_type=st.sampled_from(
        ["application/json", "text/plain; charset=utf-8", "application/octet-stream", 'x/y; q="1"']
    ),
    headers=st.dictionaries(text, text, max_size=4),
    published_at=st.floats(min_value=0, max_value=4e9),
)


@given(messages)
def test_an_envelope_round_trips(message: Message) -> None:
    assert _envelope.decode("orders", _envelope.encode(message)) == message


@given(messages)
def test_stream_fields_round_trip(message: Message) -> None:
    fields = {
        k.encode(): v.encode() if isinstance(v, str) else v
        for k, v in _envelope.encode_fields(message).items()
    }
    assert _envelope.decode_fields("orders", fields) == message


@given(st.binary())
def test_any_value_decodes_without_raising(data: bytes) -> None:
    message = _envelope.decode("orders", b"BK1" + data)
    assert message.topic == "orders"
    assert message.id


@given(
    st.dictionaries(
        st.sampled_from([b"id", b"ct", b"ts", b"h", b"body", b"bk1", b"x"]), st.binary()
    )
)
def test_any_stream_fields_decode_without_raising(fields: dict[bytes, bytes]) -> None:
    assert _envelope.decode_fields("orders", fields).id


@pytest.mark.parametrize(
    "data", [b'BK1{"id":"x","ts":"abc"}\nhello', b'BK1{"id":"x"} junk\nhello', b"BK1{\nhello"]
)
def test_a_malformed_header_is_a_raw_message_with_the_lua_id(data: bytes) -> None:
    message = _envelope.decode("orders", data)
    assert message.id == "raw-" + hashlib.sha1(data).hexdigest()[:24]
    assert message.payload == data
