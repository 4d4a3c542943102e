"""kombu+amqp: a dead letter nobody asked for whose commit's answer did not come leaves
the message in its dead-letter topic twice at most (review 33, of 1ca76b9).

The reaper handed such a message back (requeued) instead of rejecting it. Come back
past ``max_deliveries``, it was dead-lettered again: with every commit's connection
cut before its answer, one more copy each round, without end (a commit that timed
out instead was followed by a rejection anyway, the quiet window of a publish that
ran out being on). It is now rejected without requeue at once, for RabbitMQ to
dead-letter it itself: the copy whose commit went out, and RabbitMQ's.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pytest

import brokerkit
from tests.kombu_rabbitmq import close_and_delete, rabbitmq
from tests.test_kombu_review31_blocked_publish import GUARD, _end, _frames, alarmed
from tests.test_kombu_review33_dead_letter_commit import _COMMIT_OK, _Commits, _held

__all__ = ["rabbitmq"]

#: More than the bound: collecting stops there (a loop would never end).
_MOST = 4


class _AlwaysCut(_Commits):
    """Cuts every connection whose commit RabbitMQ answered, while :attr:`cut` is set."""

    def _down(self, upstream: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        buffer = bytearray()
        try:
            while data := upstream.recv(65536):
                buffer += data
                for frame in _frames(buffer):
                    kind = frame[7:11] if frame[0] == 1 else b""
                    if kind == _COMMIT_OK and self.cut.is_set():
                        self.kept += 1
                        return  # (both ends are shut below)
                    with lock:
                        client.sendall(frame)
        except OSError:
            pass
        finally:
            _end(client)
            _end(upstream)


def _letters(dead: Any) -> list[tuple[bytes, str | None]]:
    """The dead letters (body, reason) that come to ``dead`` until none comes for a
    while, or :data:`_MOST` of them."""
    got: list[tuple[bytes, str | None]] = []
    while len(got) < _MOST and (letter := dead.receive(timeout=2.0)) is not None:
        got.append((letter.body, letter.headers.get("x-dead-letter-reason")))
        letter.ack()
    return got


def test_a_reaper_dead_letter_whose_commit_connection_is_always_cut_makes_two_copies(
    rabbitmq: str, caplog: pytest.LogCaptureFixture
) -> None:
    with alarmed(rabbitmq, _AlwaysCut, stem="bkk-r33u") as net:
        # (publish_timeout: nothing here waits it out; long, for a loaded machine)
        # (leases of 2 s, not 0.2: it runs out once the cut is on; a loaded machine may
        # take 0.2 s from the receive to it)
        broker = net.broker(publish_timeout=10.0, visibility_timeout=2.0, max_deliveries=1)
        observer = brokerkit.connect(rabbitmq, prefix=net.prefix)
        alarm: Any = net.alarm
        try:
            with caplog.at_level(logging.WARNING, logger="brokerkit.kombu"):
                subscription, _, dead = _held(net, broker, observer)
                alarm.cut.set()
                # Not settled: its lease runs out on its last allowed attempt; what
                # comes back past max_deliveries is dead-lettered as it arrives.
                first = dead.receive(timeout=GUARD)
                assert first is not None and first.body == b"only"
                first.ack()
                for _ in range(3):
                    assert subscription.receive(timeout=1.0) is None
                got = [(first.body, first.headers.get("x-dead-letter-reason")), *_letters(dead)]
                alarm.cut.clear()
                assert got == [(b"only", "max_deliveries"), (b"only", "rejected")]
                assert alarm.kept == 1
                assert subscription.receive(timeout=0.5) is None
            warnings = [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING and "may have been stored" in r.getMessage()
            ]
            assert len(warnings) == 1, warnings
            assert "rejected without requeue" in warnings[0]
            subscription.close()
            dead.close()
        finally:
            alarm.cut.clear()
            close_and_delete([observer])
