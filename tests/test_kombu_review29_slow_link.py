"""kombu+amqp: a big message arriving over a slow link is read without a busy loop.

A receive watches the socket without the link's lock, then reads what came "without
waiting" (59d1700). That read put the socket in non-blocking mode, and py-amqp reads a
frame to its end: it retried ``recv`` on EAGAIN until the rest of the frame came, a
core spent (holding the lock) for as long as the message took to arrive (a 4 MB
message at about 800 kB/s: 4.6 s of CPU against 0.09 s before; 2 million ``recv``
calls). Real RabbitMQ, through a proxy that forwards what RabbitMQ sends at a set pace.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import brokerkit
from brokerkit._url import BrokerURL
from tests.kombu_rabbitmq import close_and_delete, kombu_broker, rabbitmq
from tests.proxies import Listener, pipe

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

#: What the slow link carries from RabbitMQ, in bytes a second.
_RATE = 1_500_000
#: The message: about two seconds on the link.
_SIZE = 3_000_000
#: The CPU the whole process may spend while the message arrives: ten times what the
#: read takes (some hundredths of a second), a tenth of what the busy loop took.
_CPU_BOUND = 0.25


class SlowLink(Listener):
    """A TCP proxy to ``target`` that forwards what the server sends at :data:`_RATE`
    (and what the client sends as it comes)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(pipe, client, upstream)
        self.spawn(pipe, upstream, client, _paced)


def _paced(data: bytes, first: bool) -> bytes:
    time.sleep(len(data) / _RATE)  # (the link's pace, not a synchronization)
    return data


def test_a_big_message_over_a_slow_link_is_read_without_a_busy_loop(
    kombu_broker: Factory, rabbitmq: str
) -> None:
    """A behaviour test of a busy loop, not a speed assertion: the bound is on the CPU
    the process spends (the reaper's heartbeat may be the thread that reads) while the
    message arrives, far above what reading it costs, far below what spinning on
    ``recv`` for the two seconds it takes costs; the time it takes is not checked."""
    publisher = kombu_broker()
    prefix = publisher.options.prefix
    parsed = BrokerURL.parse(rabbitmq)
    link = SlowLink((parsed.host or "127.0.0.1", parsed.port or 5672))
    url = f"kombu+amqp://{parsed.username}:{parsed.password}@127.0.0.1:{link.port}{parsed.path}"
    reader = brokerkit.connect(url, prefix=prefix)
    try:
        with reader.subscribe("big") as big:
            assert big.receive(timeout=0.2) is None  # a consumer from now on: pushed
            publisher.publish("big", b"x" * _SIZE)
            cpu = time.process_time()
            delivery = big.receive(timeout=60)
            cpu = time.process_time() - cpu
            assert delivery is not None and len(delivery.payload) == _SIZE
            delivery.ack()
    finally:
        close_and_delete([reader])
        link.close()
    assert cpu < _CPU_BOUND, f"{cpu:.2f} s of CPU while a {_SIZE:,}-byte message arrived"
