"""Closing a redis+pubsub subscription is as synchronous as opening one: once
``close()`` returns, Redis no longer counts it as a receiver (``PUBSUB NUMSUB`` /
``PUBSUB NUMPAT``), whether a reader was blocked in ``receive()`` in another thread
or not, through hiredis as through redis-py's pure-Python parser.

The race guarded against: Redis drops a subscription only when it reads the
connection's end, which over a real network (or a proxy, as a CI service container
has) can come after a command the application sends next on another connection. The
subscribers here reach Redis through a proxy that passes a connection's end on late;
the assertions read Redis directly.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.pubsub.listener import ChannelListener
from tests.conftest import iterate_in_thread
from tests.proxies import Listener
from tests.redis_server import RedisServer
from tests.test_redis_pubsub_reading import _use_the_python_parser

WAIT = 5.0
ROUNDS = 20


@pytest.fixture(params=["hiredis", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which redis-py parser the subscriber connections use."""
    if request.param == "python":
        _use_the_python_parser(monkeypatch)
    return str(request.param)


#: How late the proxy passes a client's end of a connection on to Redis.
LATE_EOF = 0.2


class _LateEOFProxy(Listener):
    """A TCP proxy to ``port`` that forwards bytes at once but a client's end of the
    connection only ``LATE_EOF`` seconds later, as a network path may. :meth:`close`
    closes every socket and joins every thread (a proxy per test: what it left open
    stayed open for the rest of the worker)."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        server = socket.create_connection(self.target)
        self.keep(server)
        self.spawn(self._pump, client, server, LATE_EOF)
        self.spawn(self._pump, server, client, 0.0)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, eof_delay: float) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        time.sleep(eof_delay)  # the fault modelled: the end arrives late
        for end in (sink, source):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in self._sockets:  # wakes a pump still in recv(), which close() would not
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        super().close()


@pytest.fixture
def broker(redis_server: RedisServer, parser: str) -> Iterator[brokerkit.Broker]:
    """A redis+pubsub broker on this test's private server (NUMPAT counts the whole
    server), reached through a proxy that passes a connection's end on late."""
    proxy = _LateEOFProxy(redis_server.port)
    try:
        with brokerkit.connect(f"redis+pubsub://127.0.0.1:{proxy.port}/0") as made:
            yield made
    finally:
        proxy.close()


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def _receivers(admin: redis.Redis, listener: ChannelListener) -> int:
    """How many subscriptions Redis counts for the listener's channel (or patterns)."""
    if listener.pattern:
        return int(admin.pubsub_numpat())
    ((_, count),) = admin.pubsub_numsub(listener.channel)
    return int(count)


def _subscribe(
    broker: brokerkit.Broker, pattern: bool
) -> tuple[brokerkit.Subscription, ChannelListener]:
    subscription = broker.subscribe("room.*" if pattern else "room.1", pattern=pattern)
    listener = subscription.state
    assert isinstance(listener, ChannelListener)
    return subscription, listener


@pytest.mark.parametrize("pattern", [False, True], ids=["channel", "pattern"])
def test_after_close_with_no_reader_redis_counts_no_receiver(
    broker: brokerkit.Broker, admin: redis.Redis, pattern: bool
) -> None:
    for round_ in range(ROUNDS):
        subscription, listener = _subscribe(broker, pattern)
        assert _receivers(admin, listener) == 1
        subscription.close()
        assert _receivers(admin, listener) == 0, f"still subscribed after close() (round {round_})"


def _wait_until_reading(listener: Any) -> None:
    """Poll (with a deadline) until a reader is inside the listener's read."""
    end = time.monotonic() + WAIT
    while not listener._reading.locked():
        assert time.monotonic() < end, "the reader never started reading"
        time.sleep(0.001)


@pytest.mark.parametrize("pattern", [False, True], ids=["channel", "pattern"])
def test_after_a_listener_closes_under_a_blocked_reader_redis_counts_no_receiver(
    broker: brokerkit.Broker, admin: redis.Redis, pattern: bool
) -> None:
    for round_ in range(ROUNDS):
        subscription, listener = _subscribe(broker, pattern)
        reader = threading.Thread(target=listener.read, args=(10, 30.0))
        reader.start()
        _wait_until_reading(listener)
        listener.close()
        assert _receivers(admin, listener) == 0, f"still subscribed after close() (round {round_})"
        reader.join(timeout=WAIT)
        assert not reader.is_alive(), "close() did not wake the blocked reader"
        subscription.close()


@pytest.mark.parametrize("pattern", [False, True], ids=["channel", "pattern"])
def test_after_close_while_another_thread_receives_redis_counts_no_receiver(
    broker: brokerkit.Broker, admin: redis.Redis, parser: str, pattern: bool
) -> None:
    # Subscription.close() waits for the fetch under way (up to a second), so fewer rounds.
    for round_ in range(2):
        subscription, listener = _subscribe(broker, pattern)
        reader, ended, _ = iterate_in_thread(subscription)
        _wait_until_reading(listener)
        subscription.close()
        assert _receivers(admin, listener) == 0, f"still subscribed after close() (round {round_})"
        reader.join(timeout=WAIT)
        assert not reader.is_alive(), "close() did not wake the blocked reader"
        assert ended == [None]
