"""kombu+amqp: a publish whose channel RabbitMQ closes on a connection it blocks (the
exchange deleted during a memory or disk alarm) ends after ``publish_timeout`` with
ConnectionFailed (review 31d).

RabbitMQ reads the publish that blocks the connection, finds its exchange gone and
closes the channel (``NOT_FOUND``), then reads nothing more. py-amqp reopens a channel
closed under it inside the read that took the close in, and waits there for a
``channel.open-ok`` the blocked server does not send; its heartbeats kept every socket
read of that wait short, so :class:`Deadline` (which bounded each read, not the
publish) never ran out and the publish waited as long as the alarm lasted.
:class:`ReadingAlarm` plays that alarm in front of the real RabbitMQ.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from brokerkit.exceptions import ConnectionFailed
from tests.kombu_rabbitmq import rabbitmq, raw_connection
from tests.test_kombu_review31_blocked_publish import (
    _HEARTBEAT,
    _PUBLISH,
    _REASON,
    Alarm,
    _bodies,
    _end,
    _frames,
    _in_thread,
    _method,
    _Net,
    alarmed,
)

__all__ = ["ReadingAlarm", "rabbitmq"]

#: The longest the publish may take before the test calls it hung (not a timing
#: assertion: ``publish_timeout`` is 2 s).
GUARD = 30.0
_CONTENT_HEADER = 2
_CONTENT_BODY = 3


class ReadingAlarm(Alarm):
    """:class:`Alarm`, but RabbitMQ reads the publish that blocks the connection (with
    its content header and body) before it stops reading, as the real one does: the
    server acts on that publish (here: closes its channel, the exchange gone) and
    answers nothing the client sends after it until :attr:`on` is cleared."""

    def _up(self, client: socket.socket, upstream: socket.socket, lock: threading.Lock) -> None:
        buffer = bytearray()
        body_left: int | None = None  # (of the publish that blocks, once its header came)
        publishing = False
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
                        publishing = True
                        self.blocked += 1
                        reason = _REASON.encode()
                        with lock:
                            client.sendall(_method(10, 60, bytes([len(reason)]) + reason))
                    upstream.sendall(frame)
                    if not publishing:
                        continue
                    if frame[0] == _CONTENT_HEADER:
                        (body_left,) = struct.unpack_from(">Q", frame, 11)
                    elif frame[0] == _CONTENT_BODY and body_left is not None:
                        body_left -= len(frame) - 8
                    if body_left == 0:
                        publishing, body_left = False, None
                        self._hold(client, upstream, lock)
        except (OSError, ValueError):  # (ValueError: select on ``client``, closed by _down)
            pass
        finally:
            _end(upstream)

    def _hold(self, client: socket.socket, upstream: socket.socket, lock: threading.Lock) -> None:
        while self.on.is_set() and not self._closed.is_set():
            upstream.sendall(_HEARTBEAT)  # (RabbitMQ does not time a blocked one out)
            self.on.wait(0.5)  # (as long as the alarm lasts, not a synchronization)
        with lock:
            client.sendall(_method(10, 61))


@pytest.fixture
def net(rabbitmq: str) -> Iterator[_Net]:
    with alarmed(rabbitmq, ReadingAlarm, "bkk-r31d") as made:
        yield made


def test_a_channel_closed_on_a_blocked_connection_ends_the_publish_after_publish_timeout(
    net: _Net,
) -> None:
    # heartbeat=2: RabbitMQ sends one each second, more often than what is left of
    # publish_timeout, as with the defaults (every 5 s, 30 s). publish_timeout 3 s, not
    # 2: "before" is confirmed within it, on a loaded machine too
    broker = net.broker(publish_timeout=3.0, heartbeat=2)
    broker.publish("t", b"before")  # (declared: the blocked publish only publishes)
    with raw_connection() as connection:  # (an operator deletes the exchange)
        channel = connection.channel()
        channel.exchange_delete(f"{net.prefix}|t")
        channel.close()
    net.alarm.on.set()
    thread, errors, _ = _in_thread(lambda: broker.publish("t", b"during"))
    thread.join(GUARD)
    assert not thread.is_alive(), "the publish whose channel RabbitMQ closed never ended"
    assert net.alarm.blocked == 1
    assert len(errors) == 1 and isinstance(errors[0], ConnectionFailed), errors
    assert "publish_timeout=3s" in str(errors[0])
    net.alarm.on.clear()
    # The blocked connection was dropped: the next publish connects and declares anew.
    broker.publish("t", b"after")
    assert _bodies(broker, "t", b"after") == [b"before", b"after"]
