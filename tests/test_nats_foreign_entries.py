"""The NATS JetStream backend against bytes another program stored: an empty message
with a ``Status`` header is a message (not the end of a pull), and a ``Bk-Meta`` that
is not brokerkit's, however hostile, decodes as a raw message instead of raising; a
subject that carries no valid topic is left out of the topics listed."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import nats as nats_py
import pytest
from hypothesis import given
from hypothesis import strategies as st

import brokerkit
from brokerkit._message import Message
from brokerkit.backends.nats._wire import META_HEADER, decode, encode_headers
from brokerkit.cli._app import run
from tests.strategies import json_values


@pytest.fixture
def nats(nats_url: str, nats_prefix: str) -> Iterator[Callable[..., Any]]:
    """``nats(**options)``: a sync broker on this test's stream, closed at the end."""
    made: list[brokerkit.Broker] = []

    def make(**options: Any) -> Any:
        broker = brokerkit.connect(nats_url, prefix=nats_prefix, **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


def _store_raw(url: str, subject: str, entries: list[tuple[bytes, dict[str, str]]]) -> None:
    """Store ``(payload, headers)`` entries on ``subject`` as another program would."""

    async def store() -> None:
        nc = await nats_py.connect(url)
        try:
            for payload, headers in entries:
                await nc.jetstream().publish(subject, payload, headers=headers)
        finally:
            await nc.close()

    asyncio.run(store())


def _receive(subscription: brokerkit.Subscription, count: int, seconds: float) -> list[Any]:
    """Up to ``count`` deliveries (each acked) within ``seconds``."""
    got: list[Any] = []
    deadline = time.monotonic() + seconds
    while len(got) < count and time.monotonic() < deadline:
        delivery = subscription.receive(timeout=0.5)
        if delivery is not None:
            got.append(delivery)
            delivery.ack()
    return got


def test_an_empty_message_with_a_status_header_is_delivered(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    """Only the server's own status (no reply subject) ends a pull: an empty entry
    with ``Status: 404`` is delivered once, and the rest of its batch is not handed
    back (which would count an attempt)."""
    broker = nats(max_deliveries=3)
    broker.publish("t", "before")  # makes the stream
    _store_raw(nats_url, f"{nats_prefix}.t", [(b"", {"Status": "404"})])
    broker.publish_many("t", [f"m{i}" for i in range(5)])
    got = _receive(broker.subscribe("t", prefetch=10), 7, 5.0)
    seen = [(d.payload if d.id.startswith("nats-") else d.body, d.attempt) for d in got]
    assert seen == [("before", 1), (b"", 1), *((f"m{i}", 1) for i in range(5))]
    raw = got[1]
    assert (raw.content_type, dict(raw.headers)) == ("application/octet-stream", {"Status": "404"})
    info = broker.inspect("t")
    assert (info.in_flight, info.dead_lettered) == (0, 0)


def test_a_subject_that_is_no_topic_is_not_listed(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    """Before, it was listed, and `brokerkit topics` and `top` failed on every topic
    of the broker (inspect refused the name), the exporter showing it down for ever."""
    broker = nats()
    broker.publish("orders", 1)  # makes the stream
    _store_raw(nats_url, f"{nats_prefix}.-bad$name", [(b"x", {})])
    assert broker.topics() == ["orders"]
    assert run(["topics", f"{nats_url}?prefix={nats_prefix}", "--json"]) == 0


# A Bk-Meta whose publish time is not a finite number: each must come out raw.
_HOSTILE_TS = ["1" + "0" * 400, '"abc"', '"1.5"', "1e400", "-Infinity", "NaN", "true", "null"]


def test_a_hostile_publish_time_is_read_as_a_raw_message(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats(max_deliveries=2)
    broker.publish("t", "before")
    hostile = [
        (f"h{i}".encode(), {META_HEADER: f'{{"id":"h{i}","ct":"text/plain","ts":{ts}}}'})
        for i, ts in enumerate(_HOSTILE_TS)
    ]
    _store_raw(nats_url, f"{nats_prefix}.t", hostile)
    broker.publish("t", "after")
    got = _receive(broker.subscribe("t", prefetch=3), len(hostile) + 2, 5.0)
    assert [d.payload for d in got[1:-1]] == [payload for payload, _ in hostile]
    for delivery in got[1:-1]:
        assert delivery.id.startswith("nats-"), "not brokerkit's envelope: a raw message"
        assert delivery.content_type == "application/octet-stream"
        assert math.isfinite(delivery.message.published_at) and delivery.attempt == 1
    assert (got[0].body, got[-1].body) == ("before", "after")
    info = broker.inspect("t")
    assert (info.in_flight, info.dead_lettered) == (0, 0)


# -- decode never raises -----------------------------------------------------------

_metas = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(["id", "ct", "ts", "h"]) | st.text(), json_values),
    st.fixed_dictionaries(
        {"id": st.text(), "ct": st.text(), "ts": json_values},
        optional={"h": json_values | st.dictionaries(st.text(), st.text())},
    ),
)
_meta_texts = st.one_of(
    _metas.map(json.dumps),  # NaN and Infinity included: json.loads reads them
    st.text(),
    st.sampled_from(["[" * 100_000, '{"a":' * 50_000, "1" + "0" * 5000]),
)


@given(
    payload=st.binary(max_size=16),
    meta=st.none() | _meta_texts,
    others=st.dictionaries(st.text(min_size=1), st.text(), max_size=3),
)
def test_decode_never_raises(payload: bytes, meta: str | None, others: dict[str, str]) -> None:
    headers = {**others, **({} if meta is None else {META_HEADER: meta})}
    message = decode("t", payload, headers, 7, 1700000000.0)
    assert isinstance(message, Message) and message.payload == payload
    assert isinstance(message.published_at, float) and math.isfinite(message.published_at)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in message.headers.items())
    if message.id == "nats-7":
        assert message.content_type == "application/octet-stream"


@given(
    published_at=st.floats(allow_nan=False, allow_infinity=False),
    headers=st.dictionaries(st.text(), st.text(), max_size=3),
)
def test_what_brokerkit_writes_still_decodes_as_written(
    published_at: float, headers: dict[str, str]
) -> None:
    message = Message("id-1", "t", b"x", "text/plain", headers, published_at)
    assert decode("t", b"x", encode_headers(message), 7, 0.0) == message
