"""How a redis+pubsub subscription reads its connection: bursts that span many socket
reads, several messages per fetch, the same promises through redis-py's
pure-Python parser (machines without hiredis) as through the hiredis fast path, and
the fast decoder of published values, which must agree with the envelope module.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis._parsers import _RESP2Parser

import brokerkit
from brokerkit._message import Message
from brokerkit.backends.redis._envelope import decode, encode
from brokerkit.backends.redis.pubsub import Gap, RedisPubSubBroker, decode_published
from brokerkit.backends.redis.pubsub.listener import ChannelListener
from brokerkit.exceptions import ConnectionFailed
from tests.conftest import iterate_in_thread
from tests.redis_server import RedisServer

Make = Callable[..., RedisPubSubBroker]
WAIT = 5.0


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a redis+pubsub broker under this test's prefix, closed at the end."""
    return functools.partial(redis_broker, "redis+pubsub")


def _use_the_python_parser(
    monkeypatch: pytest.MonkeyPatch,
    pool: type[Any] = redis.ConnectionPool,
    parser: type[Any] = _RESP2Parser,
) -> None:
    """Make new redis-py connection pools (``pool``: sync, or ``redis.asyncio``'s)
    use the pure-Python parser (``parser``), as on a machine without hiredis."""
    original = pool.from_url.__func__

    def from_url(cls: type[Any], /, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", parser)
        return original(cls, url, **kwargs)

    monkeypatch.setattr(pool, "from_url", classmethod(from_url))


@pytest.fixture(params=["hiredis", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which redis-py parser the subscriber connections use: hiredis (the fast path,
    which reads the socket itself) or the pure-Python one (reads go through redis-py)."""
    if request.param == "python":
        _use_the_python_parser(monkeypatch)
    return str(request.param)


def _check_path(subscription: brokerkit.Subscription, parser: str) -> None:
    listener = subscription.state
    assert isinstance(listener, ChannelListener)
    assert (listener._wire is not None) == (parser == "hiredis")


def _receive(subscription: brokerkit.Subscription, count: int) -> list[Any]:
    bodies: list[Any] = []
    for _ in range(count):
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None, f"only {len(bodies)} of {count} arrived"
        bodies.append(delivery.body)
    return bodies


@pytest.mark.parametrize("prefetch", [1, 100])
def test_a_burst_spanning_many_reads_arrives_whole_and_in_order(
    make: Make, parser: str, prefetch: int
) -> None:
    broker = make()
    # Small messages, and every 100th one large enough to span several socket reads.
    bodies = [
        f"{i}:".encode() + b"x" * (150_000 + i if i % 100 == 0 else i % 300) for i in range(2000)
    ]
    with broker.subscribe("burst", prefetch=prefetch) as subscription:
        _check_path(subscription, parser)
        for start in range(0, len(bodies), 500):
            counted = broker.publish_many_counted("burst", bodies[start : start + 500])
            assert all(p.receivers == 1 for p in counted)
        assert _receive(subscription, len(bodies)) == bodies
        assert subscription.receive(timeout=0.05) is None


def test_a_fetch_takes_every_message_that_has_arrived(make: Make, parser: str) -> None:
    broker = make()
    with broker.subscribe("batch", prefetch=100) as subscription:
        _check_path(subscription, parser)
        assert all(p.receivers == 1 for p in broker.publish_many_counted("batch", list(range(60))))
        fetches, bodies = 0, list[Any]()
        while len(bodies) < 60:
            fetches += subscription.buffered == 0
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None
            bodies.append(delivery.body)
        assert bodies == list(range(60))
        # 60 messages of ~100 bytes arrive in one or a few segments: a fetch per
        # message would mean the subscription reads one reply per call.
        assert fetches <= 10


def test_through_the_python_parser_a_killed_connection_resubscribes_with_a_gap(
    make: Make, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    gaps: list[Gap] = []
    _use_the_python_parser(monkeypatch)
    broker = make(on_gap=gaps.append)
    with broker.subscribe("kill", prefetch=10) as subscription:
        _check_path(subscription, "python")
        name = f"brokerkit-pubsub-{subscription.consumer}"
        (victim,) = [
            str(c["id"]) for c in redis_client.client_list(_type="pubsub") if c["name"] == name
        ]
        assert redis_client.client_kill_filter(_id=victim) == 1
        end = time.monotonic() + 20
        while not gaps:
            assert time.monotonic() < end, "no gap was reported: the subscriber hangs"
            assert subscription.receive(timeout=0.5) is None
        assert gaps[0].topic == "kill" and gaps[0].reason
        assert broker.publish_counted("kill", "after").receivers == 1
        assert _receive(subscription, 1) == ["after"]


def test_through_the_python_parser_idle_pings_are_answered_and_a_frozen_server_is_noticed(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_the_python_parser(monkeypatch)
    gaps: list[Gap] = []
    broker = brokerkit.connect(
        redis_server.url("redis+pubsub") + "?socket_timeout=0.5",
        ping_interval=0.1,
        reconnect_timeout=0.5,
        on_gap=gaps.append,
    )
    subscription = broker.subscribe("frozen")
    _check_path(subscription, "python")
    for _ in range(3):  # several ping intervals of silence, each answered
        assert subscription.receive(timeout=0.25) is None
    assert not gaps
    redis_server.freeze()
    failure: ConnectionFailed | None = None
    try:
        end = time.monotonic() + 20
        while failure is None:
            assert time.monotonic() < end, "a frozen server went unnoticed: a silent hang"
            try:
                subscription.receive(timeout=0.5)
            except ConnectionFailed as exc:
                failure = exc
    finally:
        redis_server.thaw()
    assert "PING" in str(failure)
    end = time.monotonic() + 20
    while not gaps:
        assert time.monotonic() < end, "no recovery after the server thawed"
        subscription.receive(timeout=0.5)
    broker.publish("frozen", "thawed")
    assert _receive(subscription, 1) == ["thawed"]
    broker.close()


def test_closing_from_another_thread_ends_a_blocked_reader(make: Make, parser: str) -> None:
    broker = make()
    subscription = broker.subscribe("blocked", prefetch=10)
    _check_path(subscription, parser)
    reader, ended, listening = iterate_in_thread(subscription)
    assert listening.wait(WAIT)
    subscription.close()
    reader.join(timeout=WAIT)
    assert not reader.is_alive(), "close() did not wake the blocked reader"
    assert ended == [None]


# -- decoding what was published ---------------------------------------------------------

_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    message_id=_texts,
    content_type=_texts,
    published_at=st.floats(allow_nan=False, allow_infinity=False),
    headers=st.one_of(st.just({}), st.dictionaries(_texts, _texts, max_size=2)),
    payload=st.binary(max_size=20),
)
def test_the_fast_decoder_reads_every_envelope_as_the_envelope_module_does(
    message_id: str, content_type: str, published_at: float, headers: dict[str, str], payload: bytes
) -> None:
    data = encode(Message(message_id, "t", payload, content_type, headers, published_at))
    assert decode_published("t", data) == decode("t", data)


@settings(max_examples=300, deadline=None)
@given(
    head=st.sampled_from(
        [b"", b'BK1{"id":"', b'BK1{"id":"a","ct":"', b'BK1{"id":"a","ct":"b","ts":']
    ),
    tail=st.binary(max_size=30)
    | st.sampled_from(
        [b"1}\n", b"1.5e3}\nx", b"01}\n", b"1.}\n", b"+1}\n", b"NaN}\n", b"1} \n", b'\xff"}\n']
    ),
)
def test_the_fast_decoder_reads_any_other_value_as_the_envelope_module_does(
    head: bytes, tail: bytes
) -> None:
    data = head + tail
    assert decode_published("t", data) == decode("t", data)
