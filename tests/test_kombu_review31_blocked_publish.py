"""kombu+amqp: a publish RabbitMQ blocks (a memory or disk alarm) ends after
``publish_timeout`` with ConnectionFailed (review 31).

During an alarm RabbitMQ stops reading from a connection that publishes, says so
(``connection.blocked``), and keeps sending heartbeats: the socket timeout of two
heartbeats never ran out, and a publish waited for its confirms for as long as the
alarm lasted (a large body waited to be written, then was sent again over a new
connection). The alarm is played by :class:`Alarm`, a proxy in front of the real
RabbitMQ that does what RabbitMQ does to a publisher during one (an alarm of the
shared server would block every other test's publishers).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.exceptions import ConnectionFailed
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.proxies import Listener
from tests.waiting import wait_until

__all__ = ["Alarm", "rabbitmq"]

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 60.0
#: What a client sends first, before its frames.
_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
_FRAME_END = b"\xce"
_HEARTBEAT = struct.pack(">BHI", 8, 0, 0) + _FRAME_END
#: basic.publish (class 60, method 40).
_PUBLISH = struct.pack(">HH", 60, 40)
_REASON = "low on memory (test alarm)"


def _method(class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    payload = struct.pack(">HH", class_id, method_id) + arguments
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + _FRAME_END


def _frames(buffer: bytearray) -> Iterator[bytes]:
    """Take the whole frames (the protocol header too) off the head of ``buffer``."""
    while True:
        if buffer[:4] == b"AMQP":
            if len(buffer) < len(_PROTOCOL_HEADER):
                return
            size = len(_PROTOCOL_HEADER)
        elif len(buffer) >= 7:
            size = 7 + struct.unpack_from(">I", buffer, 3)[0] + 1
        else:
            return
        if len(buffer) < size:
            return
        frame = bytes(buffer[:size])
        del buffer[:size]
        yield frame


class Alarm(Listener):
    """A proxy to RabbitMQ that, while :attr:`on` is set, blocks a connection as it
    publishes, as RabbitMQ does during a resource alarm: it sends it
    ``connection.blocked``, forwards the publish and what follows no more, and stops
    reading from it (its writes fill the socket's buffers); it forwards what the
    server sends (its heartbeats), and keeps the server from timing the connection
    out (RabbitMQ stops checking the heartbeats of a blocked connection). Once
    :attr:`on` is cleared, the connection gets ``connection.unblocked`` and what it
    held goes on to the server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.on = threading.Event()
        #: How many connections it has blocked.
        self.blocked = 0
        super().__init__()
        # (small, so that a large publish fills the buffers soon)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        to_client = threading.Lock()
        self.spawn(self._down, upstream, client, to_client)
        self.spawn(self._up, client, upstream, to_client)

    def close(self) -> None:
        for sock in list(self._sockets):
            _end(sock)
        super().close()

    def _down(self, upstream: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        buffer = bytearray()
        try:
            while data := upstream.recv(65536):
                buffer += data
                for frame in _frames(buffer):
                    with lock:
                        client.sendall(frame)
        except OSError:
            pass
        finally:
            _end(client)

    def _up(self, client: socket.socket, upstream: socket.socket, lock: threading.Lock) -> None:
        buffer = bytearray()
        try:
            while not self._closed.is_set():
                if not select.select([client], [], [], 0.05)[0]:
                    continue
                data = client.recv(65536)
                if not data:
                    return
                buffer += data
                for frame in _frames(buffer):
                    if self.on.is_set() and frame[0] == 1 and frame[7:11] == _PUBLISH:
                        self._block(frame, client, upstream, lock)
                    else:
                        upstream.sendall(frame)
        except (OSError, ValueError):  # (ValueError: select on ``client``, closed by _down)
            pass
        finally:
            _end(upstream)

    def _block(
        self, frame: bytes, client: socket.socket, upstream: socket.socket, lock: threading.Lock
    ) -> None:
        self.blocked += 1
        reason = _REASON.encode()
        with lock:
            client.sendall(_method(10, 60, bytes([len(reason)]) + reason))
        while self.on.is_set() and not self._closed.is_set():
            upstream.sendall(_HEARTBEAT)
            self.on.wait(0.5)  # (as long as the alarm lasts, not a synchronization)
        with lock:
            client.sendall(_method(10, 61))
        upstream.sendall(frame)  # (and the next reads carry the rest on)


def _end(sock: socket.socket) -> None:
    """Close ``sock``, ending a recv on it in another thread (a close alone does not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Net:
    def __init__(self, url: str, alarm: Alarm, stem: str = "bkk-r31") -> None:
        parsed = BrokerURL.parse(url)
        self.alarm = alarm
        self.prefix = f"{stem}-{uuid.uuid4().hex[:10]}"
        self.url = f"kombu+amqp://{parsed.username}:{parsed.password}@127.0.0.1:{alarm.port}/"
        self.made: list[Any] = []

    def broker(self, **options: Any) -> Any:
        broker = brokerkit.connect(self.url, prefix=self.prefix, **options)
        self.made.append(broker)
        return broker


@contextlib.contextmanager
def alarmed(rabbitmq: str, kind: type[Alarm] = Alarm, stem: str = "bkk-r31") -> Iterator[_Net]:
    """Brokers (under a prefix of their own, ``stem``-...) that reach ``rabbitmq``
    through a ``kind`` of :class:`Alarm`; at the end the alarm is off and closed, and
    every exchange and queue they declared deleted."""
    parsed = BrokerURL.parse(rabbitmq)
    alarm = kind((parsed.host or "127.0.0.1", parsed.port or 5672))
    made = _Net(rabbitmq, alarm, stem)
    try:
        yield made
    finally:
        alarm.on.clear()
        alarm.close()
        close_and_delete(made.made)


@pytest.fixture
def net(rabbitmq: str) -> Iterator[_Net]:
    with alarmed(rabbitmq) as made:
        yield made


def _in_thread(call: Any) -> tuple[threading.Thread, list[BaseException], list[Any]]:
    errors: list[BaseException] = []
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors, results


def _bodies(broker: Any, topic: str, last: bytes) -> list[bytes]:
    """The bodies of ``topic``'s default group, up to ``last``."""
    got: list[bytes] = []
    with broker.subscribe(topic) as subscription:
        while last not in got:
            delivery = subscription.receive(timeout=GUARD)
            assert delivery is not None, f"only {got!r} came"
            got.append(delivery.body)
            delivery.ack()
    return got


def test_a_publish_rabbitmq_blocks_raises_connection_failed_after_publish_timeout(
    net: _Net,
) -> None:
    # publish_timeout 3 s, not 1: "before" is confirmed within it (under load a
    # confirm came after 1 s); the blocked publish still runs out of it
    broker = net.broker(publish_timeout=3.0)
    broker.publish("alarm", b"before")  # (declared: the blocked publish only publishes)
    net.alarm.on.set()
    thread, errors, _ = _in_thread(lambda: broker.publish("alarm", b"during"))
    thread.join(GUARD)
    assert not thread.is_alive(), "the publish RabbitMQ blocked never ended"
    assert len(errors) == 1 and isinstance(errors[0], ConnectionFailed), errors
    text = str(errors[0])
    assert (
        "publish_timeout=3s" in text
        and "it blocked the connection (connection.blocked)" in text
        and "may or may not" in text
    )
    net.alarm.on.clear()
    # The blocked connection was dropped: the next publish connects anew.
    broker.publish("alarm", b"after")
    # (what was held may or may not have been stored: here, it was not)
    assert _bodies(broker, "alarm", b"after") in (
        [b"before", b"after"],
        [b"before", b"during", b"after"],
    )


def test_a_large_publish_whose_writes_rabbitmq_stops_reading_ends_too(net: _Net) -> None:
    broker = net.broker(publish_timeout=3.0, heartbeat=60)  # (3 s: as above)
    broker.publish("big", b"before")
    net.alarm.on.set()
    body = b"x" * (16 * 1024 * 1024)
    thread, errors, _ = _in_thread(lambda: broker.publish("big", body))
    thread.join(GUARD)
    assert not thread.is_alive(), "the large publish RabbitMQ blocked never ended"
    assert len(errors) == 1 and isinstance(errors[0], ConnectionFailed), errors
    assert "publish_timeout=3s" in str(errors[0])
    assert net.alarm.blocked == 1  # (not sent again over a new connection)
    net.alarm.on.clear()
    broker.publish("big", b"after")
    assert _bodies(broker, "big", b"after")[0] == b"before"


def test_a_publish_unblocked_within_publish_timeout_is_confirmed_once(net: _Net) -> None:
    broker = net.broker()  # (publish_timeout: 30 s)
    broker.publish("brief", b"before")
    net.alarm.on.set()
    thread, errors, results = _in_thread(lambda: broker.publish("brief", b"during"))
    wait_until(lambda: net.alarm.blocked == 1, "the publish blocked", within=GUARD)
    net.alarm.on.clear()
    thread.join(GUARD)
    assert not thread.is_alive() and not errors and len(results) == 1, errors
    broker.publish("brief", b"after")
    assert _bodies(broker, "brief", b"after") == [b"before", b"during", b"after"]


def test_publish_timeout_must_be_positive(rabbitmq: str) -> None:
    with pytest.raises(brokerkit.InvalidOption, match="publish_timeout"):
        brokerkit.connect(rabbitmq, publish_timeout=0)
