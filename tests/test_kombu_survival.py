"""kombu backends against what they must survive: a ``brokerkit`` header another
program wrote badly (read as a raw message, on kombu+amqp and kombu+memory), many
subscriptions opened and closed (no reader left behind), and topic or group names
whose AMQP names would pass 255 bytes (InvalidTopic, nothing declared)."""

from __future__ import annotations

import datetime
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import kombu
import pytest
from amqp import Message as AmqpMessage
from amqp.exceptions import NotFound
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit._message import Message
from brokerkit.backends.kombu._envelope import HEADER, decode, encode
from brokerkit.exceptions import InvalidTopic
from tests.kombu_rabbitmq import kombu_broker, rabbitmq, raw_connection
from tests.strategies import json_values

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

# A ``brokerkit`` header whose publish time is not a finite number.
_HOSTILE = [
    '{"ts":"abc"}',
    '{"ts":1' + "0" * 400 + "}",
    '{"ts":Infinity}',
    '{"ts":NaN}',
    '{"ts":true}',
    '{"ts":[1]}',
    "[" * 100_000,
]


def _receive_all(subscription: brokerkit.Subscription, count: int) -> list[Any]:
    """Up to ``count`` deliveries (each acked), waiting at most 5 s in all."""
    got: list[Any] = []
    deadline = time.monotonic() + 5
    while len(got) < count and time.monotonic() < deadline:
        delivery = subscription.receive(timeout=0.5)
        if delivery is not None:
            got.append(delivery)
            delivery.ack()
    return got


def test_amqp_a_hostile_header_is_read_as_a_raw_message(kombu_broker: Factory) -> None:
    broker = kombu_broker(max_deliveries=3)
    broker.publish("t", "before")
    with raw_connection() as connection:
        channel = connection.channel()
        for i, text in enumerate(_HOSTILE):
            raw = AmqpMessage(f"h{i}".encode(), application_headers={HEADER: text})
            # confirmed before the next, and before "after" (from another connection,
            # which could otherwise overtake the last of them)
            channel.basic_publish_confirm(
                raw, exchange=f"{broker.options.prefix}|t", routing_key=""
            )
    broker.publish("t", "after")
    got = _receive_all(broker.subscribe("t"), len(_HOSTILE) + 2)
    assert [d.payload for d in got[1:-1]] == [f"h{i}".encode() for i in range(len(_HOSTILE))]
    for delivery in got[1:-1]:
        assert delivery.content_type == "application/octet-stream"
        assert delivery.attempt == 1 and math.isfinite(delivery.message.published_at)
    assert (got[0].body, got[-1].body) == ("before", "after")
    info = broker.inspect("t")
    assert (info.length, info.in_flight, info.dead_lettered) == (0, 0, 0)


def test_memory_a_hostile_header_loses_nothing_of_its_batch() -> None:
    prefix = f"bkt-{uuid.uuid4().hex[:12]}"
    broker = brokerkit.connect(f"kombu+memory://?prefix={prefix}")
    try:
        broker.publish("t", "m0")
        with kombu.Connection(transport="memory") as connection:
            channel = connection.channel()
            for text in _HOSTILE:
                raw = channel.prepare_message(
                    b"hostile", content_encoding="binary", headers={HEADER: text}
                )
                channel.basic_publish(raw, exchange=f"{prefix}|t", routing_key="")
        broker.publish("t", "m1")
        with broker.subscribe("t", prefetch=5) as subscription:
            got = _receive_all(subscription, len(_HOSTILE) + 2)
        bodies = [
            d.body if d.content_type != "application/octet-stream" else d.payload for d in got
        ]
        assert bodies == ["m0", *[b"hostile"] * len(_HOSTILE), "m1"]
        assert broker.inspect("t").length == 0
    finally:
        broker.delete(*broker.declared)
        broker.close()


# -- decode never raises -----------------------------------------------------------

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**450), max_value=10**450)
    | st.floats()
    | st.text()
    | st.binary(max_size=8)
    | st.datetimes()
    | st.datetimes(
        timezones=st.builds(
            datetime.timezone,
            st.timedeltas(datetime.timedelta(hours=-23), datetime.timedelta(hours=23)),
        )
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_facts = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries({}, optional={"ts": json_values, "h": json_values}).map(json.dumps),
    st.text(),
    st.binary(max_size=16),
    st.sampled_from(_HOSTILE),
    _values,
)
_tables = st.one_of(
    _values,
    st.fixed_dictionaries(
        {},
        optional={
            HEADER: _facts,
            "x-delivery-count": _values,
            "x-first-death-reason": _values,
            "x-first-death-exchange": _values,
        },
    ),
)
_properties = st.one_of(
    _values,
    st.fixed_dictionaries(
        {}, optional={"content_type": _values, "message_id": _values, "timestamp": _values}
    ),
)


@given(
    body=st.binary(max_size=8) | st.text(max_size=8) | _values,
    properties=_properties,
    headers=_tables,
)
def test_decode_never_raises(body: Any, properties: Any, headers: Any) -> None:
    message = decode("t", body, properties, headers)
    assert isinstance(message, Message) and isinstance(message.payload, bytes)
    assert isinstance(message.id, str) and isinstance(message.content_type, str)
    assert isinstance(message.published_at, float) and math.isfinite(message.published_at)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in message.headers.items())


@given(
    published_at=st.floats(allow_nan=False, allow_infinity=False),
    headers=st.dictionaries(st.text(), st.text(), max_size=3),
)
def test_what_brokerkit_writes_still_decodes_as_written(
    published_at: float, headers: dict[str, str]
) -> None:
    message = Message("id-1", "t", b"x", "text/plain", headers, published_at)
    body, properties, table = encode(message)
    assert decode("t", body, {**properties, "content_type": "text/plain"}, table) == message


# -- no reader of a closed subscription is kept --------------------------------------


def test_amqp_closed_subscriptions_leave_no_reader_behind(kombu_broker: Factory) -> None:
    broker = kombu_broker()
    for i in range(40):
        broker.publish("t", f"m{i}")
        subscription = broker.subscribe("t")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        if i % 2:
            delivery.ack()
            subscription.close()
        else:  # settled after its subscription closed: the reader goes then
            subscription.close()
            delivery.ack()
    open_one = broker.subscribe("t")
    left = [r for r in broker._readers if r.subscription.closed]
    assert left == [], f"{len(left)} reader(s) of closed subscriptions are still held"
    assert [r.subscription for r in broker._readers] == [open_one]
    open_one.close()


# -- AMQP names are at most 255 bytes ---------------------------------------------


def _exists(exchange: str) -> bool:
    with raw_connection() as connection:
        channel = connection.channel()
        try:
            channel.exchange_declare(exchange, "fanout", passive=True)
        except NotFound:
            return False
        return True


def test_amqp_names_past_255_bytes_are_refused_before_declaring(kombu_broker: Factory) -> None:
    prefix = f"bkk-{uuid.uuid4().hex[:12]}-".ljust(64, "p")  # the longest prefix
    broker = kombu_broker(prefix=prefix)
    # 64 + 1 + 180 + 1 + len("default") = 253 bytes: the topic's own queue fits, but
    # not its dead-letter topic's (180 + len(".dlq")), which is declared with it.
    topic = "t" * 180
    with pytest.raises(InvalidTopic, match=r"is 257 bytes; AMQP allows at most 255") as caught:
        broker.publish(topic, "x")
    assert f"{prefix}|{topic}.dlq|default" in str(caught.value), "the error names the name"
    with pytest.raises(InvalidTopic, match="at most 255"):
        broker.subscribe("short", group="g" * 200)
    with pytest.raises(InvalidTopic, match="at most 255"):
        broker.inspect(topic)
    assert broker.declared.queues == broker.declared.exchanges == frozenset(), "half declared"
    assert not _exists(f"{prefix}|{topic}") and not _exists(f"{prefix}|short")
    broker.publish("short", "still fine")  # the connection was not hurt
    got = broker.subscribe("short").receive(timeout=5)
    assert got is not None and got.body == "still fine"
    got.ack()
