"""kombu+amqp: a dead letter's commit has a bound of its own, and a commit whose answer
does not come never leads to a second copy made at once (review 33, of ac6869e).

Dead letters are a transaction: published, a ``basic.qos`` round trip (RabbitMQ has
read them once it answers), ``tx.commit``. One ``publish_timeout`` covered all three:
a slow answer to the round trip left the commit too little, it ran out with the
commit sent (stored, its answer late), and the nack said to nack again, or the
reaper rejected the message for RabbitMQ to dead-letter a second copy itself. A
connection lost after the commit was sent made ``Link.call`` publish it again.

:class:`_Commits` plays the server's side: it makes the answers to ``basic.qos`` and
``tx.commit`` slow (:attr:`_Commits.slow`: a slow server, not a synchronization), or,
once, cuts the connection whose commit RabbitMQ answered instead of forwarding the
answer (:attr:`_Commits.cut`), or never forwards that answer (:attr:`_Commits.held`).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit.exceptions import ConnectionFailed
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.test_kombu_review31_blocked_publish import GUARD, Alarm, _end, _frames, _Net, alarmed
from tests.waiting import wait_until

__all__ = ["rabbitmq"]

#: basic.qos-ok (class 60, method 11) and tx.commit-ok (class 90, method 21).
_QOS_OK = struct.pack(">HH", 60, 11)
_COMMIT_OK = struct.pack(">HH", 90, 21)


class _Commits(Alarm):
    """An :class:`Alarm` (never on here) whose answers from the server are altered."""

    def __init__(self, target: tuple[str, int]) -> None:
        #: Seconds each ``basic.qos-ok`` and ``tx.commit-ok`` takes to come.
        self.slow = 0.0
        #: Set: the next ``tx.commit-ok`` is not forwarded, its connection is cut.
        self.cut = threading.Event()
        #: Set: a ``tx.commit-ok`` (and what follows it) is never forwarded.
        self.held = threading.Event()
        #: How many connections whose commit's answer was held have ended.
        self.ended = 0
        #: How many commits' answers were cut or held.
        self.kept = 0
        super().__init__(target)

    def _down(self, upstream: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        buffer = bytearray()
        swallowing = False  # (a held commit's answer, and all after it)
        try:
            while data := upstream.recv(65536):
                buffer += data
                for frame in _frames(buffer):
                    kind = frame[7:11] if frame[0] == 1 else b""
                    if kind in (_QOS_OK, _COMMIT_OK) and self.slow:
                        self._closed.wait(self.slow)  # (a slow server)
                    if kind == _COMMIT_OK and self.cut.is_set():
                        self.cut.clear()
                        self.kept += 1
                        return  # (both ends are shut below)
                    if kind == _COMMIT_OK and self.held.is_set():
                        self.kept += 1
                        swallowing = True
                    if not swallowing:
                        with lock:
                            client.sendall(frame)
        except OSError:
            pass
        finally:
            _end(client)
            _end(upstream)
            if swallowing:
                self.ended += 1


@pytest.fixture
def net(rabbitmq: str) -> Iterator[_Net]:
    with alarmed(rabbitmq, _Commits, stem="bkk-r33c") as made:
        yield made


def _letters(dead: Any) -> list[bytes]:
    """The dead letters that come to ``dead``, until none comes for a while."""
    got = []
    while (letter := dead.receive(timeout=2.0)) is not None:
        got.append(letter.body)
        letter.ack()
    return got


def _held(net: _Net, broker: Any, observer: Any) -> tuple[Any, Any, Any]:
    broker.publish("t", b"only")
    dead = observer.subscribe("t.dlq")
    subscription = broker.subscribe("t")
    held = subscription.receive(timeout=GUARD)
    assert held is not None and held.body == b"only"
    return subscription, held, dead


def test_the_commit_waits_for_its_answer_on_a_bound_of_its_own(rabbitmq: str, net: _Net) -> None:
    """Each answer takes 3 s, under publish_timeout=5 s; both, 6 s, are over it (the
    margins of 2 s and 1 s are for a loaded machine)."""
    broker = net.broker(publish_timeout=5.0)
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    alarm: Any = net.alarm
    try:
        subscription, held, dead = _held(net, broker, observer)
        alarm.slow = 3.0
        held.nack(requeue=False)  # (answers within their own bounds: dead-lettered once)
        alarm.slow = 0.0
        assert _letters(dead) == [b"only"]
        assert subscription.receive(timeout=0.5) is None
        subscription.close()
        dead.close()
    finally:
        alarm.slow = 0.0
        close_and_delete([observer])


def test_a_connection_lost_after_the_commit_was_sent_does_not_publish_it_again(
    rabbitmq: str, net: _Net
) -> None:
    broker = net.broker()
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    alarm: Any = net.alarm
    try:
        subscription, held, dead = _held(net, broker, observer)
        alarm.cut.set()
        with pytest.raises(ConnectionFailed, match="may have been stored") as raised:
            held.nack(requeue=False)
        assert "twice" in str(raised.value)  # (nacking it again may store it twice)
        assert alarm.kept == 1
        assert _letters(dead) == [b"only"], "the dead letter was published again"
        held.ack()  # (still held: acked, it is in the dead-letter topic alone)
        assert subscription.receive(timeout=0.5) is None
        subscription.close()
        dead.close()
    finally:
        alarm.cut.clear()
        close_and_delete([observer])


def _reasons(dead: Any) -> list[tuple[bytes, str | None]]:
    """The dead letters (body, reason) that come to ``dead``, until none comes for a
    while (4 at most: more would be a loop)."""
    got: list[tuple[bytes, str | None]] = []
    while len(got) < 4 and (letter := dead.receive(timeout=2.0)) is not None:
        got.append((letter.body, letter.headers.get("x-dead-letter-reason")))
        letter.ack()
    return got


def test_a_dead_letter_of_the_reaper_whose_commit_was_not_answered_is_rejected_for_a_second_copy(
    rabbitmq: str, net: _Net, caplog: pytest.LogCaptureFixture
) -> None:
    """The commit landed, its answer did not come within publish_timeout: the message
    is rejected without requeue, with a WARNING saying so, and RabbitMQ dead-letters
    it: two copies, never more, never none (see docs/backends/kombu.md)."""
    # (publish_timeout long enough for a loaded machine's publish and qos answers: only
    # the commit's is held; leases of 2 s, not 0.2: it runs out once the answers are
    # held, and a loaded machine may take 0.2 s from the receive to that)
    broker = net.broker(publish_timeout=2.0, visibility_timeout=2.0, max_deliveries=1)
    observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
    alarm: Any = net.alarm
    try:
        with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
            subscription, _, dead = _held(net, broker, observer)
            alarm.held.set()
            # Not settled: its lease runs out on its last allowed attempt.
            letter = dead.receive(timeout=GUARD)
            assert letter is not None and letter.body == b"only"
            letter.ack()
            wait_until(lambda: alarm.ended == 1, "the end of the connection held", within=GUARD)
            alarm.held.clear()
            assert _reasons(dead) == [(b"only", "rejected")]  # (RabbitMQ's copy)
            assert letter.headers.get("x-dead-letter-reason") == "max_deliveries"
            assert subscription.receive(timeout=0.5) is None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "may have been stored" in warnings[0]
        assert "rejected without requeue" in warnings[0]
        subscription.close()
        dead.close()
    finally:
        alarm.held.clear()
        close_and_delete([observer])
