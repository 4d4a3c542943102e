"""kombu+amqp: a dead letter (a nack without requeue) that RabbitMQ confirms just as it
blocks the connection (a memory or disk alarm) leaves the next settles bounded
(review 31b).

Dead letters go out on the publishing connection, under ``publish_timeout`` (see
test_kombu_review31_blocked_publish); the acks on the reading connection, which
RabbitMQ does not block (it only blocks connections that publish). So after such a
dead letter an ack returns, and a further dead letter either goes out over a new
connection or raises ConnectionFailed within ``publish_timeout``, its message still
held, and dead-lettered once when nacked again after the alarm: never lost, never
twice. :class:`_AlarmAfterConfirm` plays RabbitMQ confirming a publish and blocking
its connection right then, ``connection.blocked`` sent just before or just after
the confirm.
"""

from __future__ import annotations

import os
import select
import signal
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
from tests.test_kombu_review31_blocked_publish import (
    _HEARTBEAT,
    _PUBLISH,
    _REASON,
    GUARD,
    Alarm,
    _end,
    _frames,
    _method,
)
from tests.waiting import call_in_thread, wait_until

__all__ = ["rabbitmq"]

#: basic.ack (class 60, method 80): a confirm, from the server.
_CONFIRM = struct.pack(">HH", 60, 80)
#: tx.commit-ok (class 90, method 21): dead letters are committed, not confirmed.
_COMMIT_OK = struct.pack(">HH", 90, 21)


class _AlarmAfterConfirm(Alarm):
    """A proxy to RabbitMQ that, while :attr:`on` is set, lets a connection's publish
    through, and once the server confirms it sends ``connection.blocked`` (before the
    confirm if :attr:`blocked_first`) and reads nothing more from that connection
    until :attr:`on` is cleared (then ``connection.unblocked``, and on)."""

    def __init__(self, target: tuple[str, int], *, blocked_first: bool) -> None:
        self.blocked_first = blocked_first
        super().__init__(target)

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        lock = threading.Lock()
        state: dict[str, Any] = {"published": False, "blocked": threading.Event()}
        self.spawn(self._down_to, upstream, client, lock, state)
        self.spawn(self._up_from, client, upstream, lock, state)

    def _down_to(
        self, upstream: socket.socket, client: socket.socket, lock: threading.Lock, state: Any
    ) -> None:
        buffer = bytearray()
        blocked = _method(10, 60, bytes([len(_REASON)]) + _REASON.encode())
        try:
            while data := upstream.recv(65536):
                buffer += data
                for frame in _frames(buffer):
                    confirm = frame[0] == 1 and frame[7:11] in (_CONFIRM, _COMMIT_OK)
                    with lock:
                        if confirm and state["published"]:
                            state["published"] = False
                            self.blocked += 1
                            state["blocked"].set()
                            sent = [blocked, frame] if self.blocked_first else [frame, blocked]
                            client.sendall(b"".join(sent))
                        else:
                            client.sendall(frame)
        except OSError:
            pass
        finally:
            _end(client)

    def _up_from(
        self, client: socket.socket, upstream: socket.socket, lock: threading.Lock, state: Any
    ) -> None:
        buffer = bytearray()
        try:
            while not self._closed.is_set():
                if state["blocked"].is_set():
                    while self.on.is_set() and not self._closed.is_set():
                        upstream.sendall(_HEARTBEAT)
                        self.on.wait(0.5)  # (as long as the alarm lasts)
                    state["blocked"].clear()
                    with lock:
                        client.sendall(_method(10, 61))
                if not select.select([client], [], [], 0.05)[0]:
                    continue
                data = client.recv(65536)
                if not data:
                    return
                buffer += data
                for frame in _frames(buffer):
                    if self.on.is_set() and frame[0] == 1 and frame[7:11] == _PUBLISH:
                        with lock:
                            state["published"] = True
                    upstream.sendall(frame)
        except (OSError, ValueError):  # (ValueError: select on ``client``, closed by _down_to)
            pass
        finally:
            _end(upstream)


@pytest.fixture(params=[False, True], ids=["confirm-then-blocked", "blocked-then-confirm"])
def alarm(request: pytest.FixtureRequest, rabbitmq: str) -> Iterator[_AlarmAfterConfirm]:
    parsed = BrokerURL.parse(rabbitmq)
    proxy = _AlarmAfterConfirm(
        (parsed.host or "127.0.0.1", parsed.port or 5672), blocked_first=request.param
    )
    try:
        yield proxy
    finally:
        proxy.on.clear()
        proxy.close()


def test_settles_after_a_dead_letter_confirmed_as_the_connection_is_blocked_end(
    rabbitmq: str, alarm: _AlarmAfterConfirm
) -> None:
    parsed = BrokerURL.parse(rabbitmq)
    url = f"kombu+amqp://{parsed.username}:{parsed.password}@127.0.0.1:{alarm.port}/"
    # publish_timeout 3 s, not 1: under load the commit of one's dead letter, before the
    # alarm, was answered after 1 s (CommitUnknown where the test needs it confirmed)
    broker = brokerkit.connect(url, prefix=f"bkk-r31b-{uuid.uuid4().hex[:10]}", publish_timeout=3.0)
    try:
        for body in (b"one", b"two", b"three"):
            broker.publish("t", body)
        subscription = broker.subscribe("t")
        held = [subscription.receive(timeout=GUARD) for _ in range(3)]
        assert [d.body for d in held if d is not None] == [b"one", b"two", b"three"]
        one, two, three = held
        assert one is not None and two is not None and three is not None
        alarm.on.set()
        one.nack(requeue=False)  # confirmed, and the connection blocked then
        assert alarm.blocked == 1
        for settle in (two.ack, lambda: three.nack(requeue=False)):
            thread, errors = call_in_thread(settle)
            thread.join(GUARD)
            assert not thread.is_alive(), "a settle after the blocked dead letter never ended"
            assert all(isinstance(e, ConnectionFailed) for e in errors), errors
        alarm.on.clear()
        if errors:  # (three's dead letter timed out: it is still held, nacked again)
            three.nack(requeue=False)
        with broker.subscribe("t.dlq") as dead:
            letters = []
            while (letter := dead.receive(timeout=2)) is not None:
                letters.append(letter.body)
                letter.ack()
        # (a dead letter that timed out may or may not have been stored: at least once)
        assert sorted(set(letters)) == [b"one", b"three"], letters
        assert subscription.receive(timeout=0.5) is None  # nothing left, nothing lost
        subscription.close()
    finally:
        alarm.on.clear()
        close_and_delete([broker])


def test_a_publish_interrupted_while_blocked_ends_without_waiting_for_the_alarm(
    rabbitmq: str,
) -> None:
    # Ctrl-C during a publish RabbitMQ blocked: the publisher channel's close waited
    # for RabbitMQ's close-ok, which it never sends while it reads nothing of the
    # connection (its heartbeats kept the socket alive): as long as the alarm lasted.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT reaches the main thread only")
    parsed = BrokerURL.parse(rabbitmq)
    proxy = Alarm((parsed.host or "127.0.0.1", parsed.port or 5672))
    url = f"kombu+amqp://{parsed.username}:{parsed.password}@127.0.0.1:{proxy.port}/"
    broker = brokerkit.connect(url, prefix=f"bkk-r31b-{uuid.uuid4().hex[:10]}")
    outlasted: list[bool] = []

    def interrupt() -> None:
        wait_until(lambda: proxy.blocked == 1, "the publish blocked", within=GUARD)
        os.kill(os.getpid(), signal.SIGINT)
        # (the guard of a hang: the alarm ends, and so the wait, after GUARD)
        if not done.wait(15.0):
            outlasted.append(True)
            proxy.on.clear()

    done = threading.Event()
    try:
        broker.publish("t", b"before")
        proxy.on.set()
        helper = threading.Thread(target=interrupt, daemon=True)
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            broker.publish("t", b"during")  # (publish_timeout: 30 s, not reached)
        done.set()
        helper.join(GUARD)
        assert not outlasted, "the interrupted publish waited for the alarm to end"
        proxy.on.clear()
        broker.publish("t", b"after")  # (a new connection)
    finally:
        done.set()
        proxy.on.clear()
        proxy.close()
        close_and_delete([broker])
