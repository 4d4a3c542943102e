"""A pattern subscription hears names no brokerkit topic has: another program's
(a raw NATS client, a redis-py ``PUBLISH``) subject or channel that is not UTF-8,
holds characters a topic may not, or is longer than a topic may be. It delivers each
of them, its ``topic`` the name as ``escaped_text`` shows it (UTF-8 as it is, bytes
that are not UTF-8 as ``\\xff`` escapes with the backslashes doubled), on
``nats+core`` as on ``redis+pubsub``, and goes on delivering what comes after.

On ``nats+core`` a subject that was not UTF-8 ended nats-py's read loop (its
``subject.decode()`` raised there, logged "nats: encountered error"): the connection
read nothing more, the pattern subscription got neither that message nor any after
it, and the broker's next publish raised ConnectionFailed (its flush unanswered).
A reply subject that was not UTF-8 did the same to a subscription to one topic. A
subject holding a vertical tab or form feed was split there by nats-py's parser (the
server separates by spaces and tabs only): a protocol error, the connection dropped.
Hostile bytes in a topic never jam it.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit.backends.redis._stream_fields import escaped_text
from tests.redis_server import RedisServer

#: Seconds a receive waits at most: a hang guard, never a pace (each wait ends with
#: the sentinel published after the hostile messages).
GUARD = 10.0
#: What NATS reads as the end of a subject (and a token separator: generated apart).
_NATS_SEPARATORS = b" \t\r\n."


def nats_topic(raw: bytes) -> str:
    """The topic a ``nats+core`` delivery from the subject ``<prefix>.`` + ``raw``
    names: the subject's text, with each ``%`` token (an empty token) empty."""
    return ".".join("" if token == "%" else token for token in escaped_text(raw).split("."))


@contextmanager
def raw_nats(url: str) -> Iterator[Any]:
    """A client that speaks the NATS protocol itself, as any program may: its
    ``publish(subject, reply=b"")`` takes any bytes, and returns once the server has
    read them (the PONG of a PING sent after)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), 10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"INFO ")
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')

    class Raw:
        def publish(self, subject: bytes, reply: bytes = b"", payload: bytes = b"hello") -> None:
            head = b"PUB " + subject + (b" " + reply if reply else b"")
            sock.sendall(head + b" %d\r\n" % len(payload) + payload + b"\r\nPING\r\n")
            while (line := reader.readline()) != b"PONG\r\n":
                assert line, "the NATS server closed the raw connection"

    try:
        yield Raw()
    finally:
        reader.close()
        sock.close()


def received_until(subscription: Any, sentinel: bytes) -> list[Any]:
    """What ``subscription`` receives up to (not with) the delivery of ``sentinel``
    (acked); fails if the sentinel does not come."""
    got = []
    while True:
        delivery = subscription.receive(timeout=GUARD)
        assert delivery is not None, f"no sentinel: the subscription stopped after {got}"
        if delivery.payload == sentinel:
            delivery.ack()
            return got
        got.append(delivery)


def settle(deliveries: list[Any]) -> None:
    """Nack the first of ``deliveries`` (to its dead letters, where a backend has them)
    and ack the others, as a consumer of a foreign name may."""
    deliveries[0].nack(requeue=False)
    for delivery in deliveries[1:]:
        delivery.ack()


@pytest.fixture
def core_url(nats_url: str) -> str:
    return nats_url.replace("nats://", "nats+core://", 1)


@pytest.fixture
def quiet_loggers(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The records of brokerkit's and nats-py's loggers, WARNING and up."""
    with caplog.at_level(logging.WARNING):
        yield caplog
    noisy = [r for r in caplog.records if r.name.split(".")[0] in ("nats", "brokerkit")]
    assert noisy == [], [r.getMessage() for r in noisy]


# -- nats+core ---------------------------------------------------------------------------


def test_nats_core_pattern_hears_subjects_that_are_not_utf8(
    core_url: str, nats_prefix: str, quiet_loggers: pytest.LogCaptureFixture
) -> None:
    hostile = [b"room\xff\xfe", b"room\\xff", b"room.\xc3(.%", b"\x80"]
    with brokerkit.connect(core_url, prefix=nats_prefix) as broker, raw_nats(core_url) as raw:
        everything = broker.subscribe("*", pattern=True)
        rooms = broker.subscribe("room*", pattern=True)
        for name in hostile:
            raw.publish(nats_prefix.encode() + b"." + name)
        broker.publish("room.end", b"sentinel")  # (raised ConnectionFailed: jammed)
        got = received_until(everything, b"sentinel")
        assert [d.topic for d in got] == ["room\\xff\\xfe", "room\\\\xff", "room.\\xc3(.", "\\x80"]
        assert all(d.payload == b"hello" for d in got)
        assert [d.topic for d in received_until(rooms, b"sentinel")] == [
            "room\\xff\\xfe",
            "room\\\\xff",
            "room.\\xc3(.",
        ]
        settle(got)
        broker.publish("room.after", b"later")  # and the subscription goes on
        later = everything.receive(timeout=GUARD)
        assert later is not None and (later.topic, later.payload) == ("room.after", b"later")


def test_nats_core_topic_subscription_survives_a_reply_subject_not_utf8(
    core_url: str, nats_prefix: str, quiet_loggers: pytest.LogCaptureFixture
) -> None:
    with brokerkit.connect(core_url, prefix=nats_prefix) as broker, raw_nats(core_url) as raw:
        orders = broker.subscribe("orders")
        raw.publish(f"{nats_prefix}.orders".encode(), reply=b"_INBOX.\xff\xfe")
        broker.publish("orders", b"sentinel")
        got = received_until(orders, b"sentinel")
        assert [(d.topic, d.payload) for d in got] == [("orders", b"hello")]


def test_nats_core_pattern_hears_names_that_are_no_topic_as_they_are(
    core_url: str, nats_prefix: str, quiet_loggers: pytest.LogCaptureFixture
) -> None:
    hostile = ["a!b", "é", "%", "a%b", "a.%", "\x01\x1b[31m\x7f", "*", ">", "x" * 3000]
    hostile += ["a\x0bb", "a\x0c1"]  # (read as other fields of the MSG line: dropped it)
    with brokerkit.connect(core_url, prefix=nats_prefix) as broker, raw_nats(core_url) as raw:
        everything = broker.subscribe("*", pattern=True)
        for name in hostile:
            raw.publish(f"{nats_prefix}.{name}".encode())
        broker.publish("end", b"sentinel")
        got = received_until(everything, b"sentinel")
        assert [d.topic for d in got] == [nats_topic(name.encode()) for name in hostile]
        assert [d.topic for d in got][2:5] == ["", "a%b", "a."]


@settings(
    max_examples=25,
    deadline=None,  # (each example waits for its sentinel, up to GUARD)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tokens=st.lists(
        st.binary(min_size=1, max_size=12).filter(
            lambda b: not any(c in _NATS_SEPARATORS for c in b)
        ),
        min_size=1,
        max_size=3,
    )
)
def test_nats_core_any_subject_bytes_are_heard_and_never_jam(
    core_url: str, nats_prefix: str, tokens: list[bytes]
) -> None:
    raw_name = b"h" + b".".join(tokens)
    sentinel = uuid.uuid4().hex.encode()
    with brokerkit.connect(core_url, prefix=nats_prefix) as broker, raw_nats(core_url) as raw:
        heard = broker.subscribe("h*", pattern=True)
        raw.publish(nats_prefix.encode() + b"." + raw_name)
        broker.publish("h", sentinel)
        assert [d.topic for d in received_until(heard, sentinel)] == [nats_topic(raw_name)]


# -- redis+pubsub --------------------------------------------------------------------------


@pytest.mark.parametrize("plain", [False, True])
def test_redis_pubsub_pattern_hears_foreign_channels(
    redis_server: RedisServer, plain: bool, quiet_loggers: pytest.LogCaptureFixture
) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    hostile = [
        b"room\xff\xfe",
        b"room\\xff",
        b"room!\n\r\x00\x1b[31m",
        b"room}",
        b"room" + b"\xe9" * 100_000,
        "room-é".encode(),
    ]
    url = f"{redis_server.url('redis+pubsub')}?prefix={prefix}&plain_channels={str(plain).lower()}"
    client = redis_server.client()
    with brokerkit.connect(url) as broker:
        rooms = broker.subscribe("room*", pattern=True)
        for name in hostile:
            channel = name if plain else f"{prefix}:{{".encode() + name + b"}"
            assert client.publish(channel, b"hello") == 1
        broker.publish("room.end", b"sentinel")
        got = received_until(rooms, b"sentinel")
        assert [d.topic for d in got] == [escaped_text(name) for name in hostile]
        settle(got)
        broker.publish("room.after", b"later")
        later = rooms.receive(timeout=GUARD)
        assert later is not None and (later.topic, later.payload) == ("room.after", b"later")
    client.close()


def test_redis_pubsub_any_channel_bytes_are_heard_and_never_jam(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+pubsub") + "?plain_channels=true") as broker:
        heard = broker.subscribe("h*", pattern=True)

        @settings(max_examples=25, deadline=None)
        @given(name=st.binary(max_size=40))
        def hostile_channel(name: bytes) -> None:
            sentinel = uuid.uuid4().hex.encode()
            assert client.publish(b"h" + name, b"hello") == 1
            broker.publish("h", sentinel)
            got = received_until(heard, sentinel)
            assert [d.topic for d in got] == [escaped_text(b"h" + name)]

        hostile_channel()
    client.close()
