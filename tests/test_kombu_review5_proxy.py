"""What the ``test_kombu_review5_*`` tests share (no tests of its own): a TCP proxy in
front of the test RabbitMQ that can freeze (a server that stops answering) and cut
(the network closes both sides, as a dropped link or a killed load balancer does),
and brokers connected through it, each closed and what it declared deleted at the end.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from tests.kombu_rabbitmq import close_and_delete, rabbitmq, raw_connection
from tests.proxies import BlackHole

__all__ = ["Net", "Proxy", "net", "queue_depth", "rabbitmq"]


class Proxy(BlackHole):
    """:class:`~tests.proxies.BlackHole` (freeze with :attr:`frozen`) that can also
    :meth:`cut` every connection it carries."""

    def cut(self) -> None:
        """Close both sides of every connection, as the network would: RabbitMQ and
        the client each read an end of stream. New connections go through."""
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):  # (one closed already)
                sock.shutdown(socket.SHUT_RDWR)


class Net:
    """Brokers under one test prefix, through :attr:`proxy` or straight to RabbitMQ."""

    def __init__(self, url: str, proxy: Proxy) -> None:
        parsed = BrokerURL.parse(url)
        self.proxy = proxy
        self.prefix = f"bkk-r5-{uuid.uuid4().hex[:10]}"
        self._direct = url
        self._through = (
            f"kombu+amqp://{parsed.username}:{parsed.password}@127.0.0.1:{proxy.port}{parsed.path}"
        )
        self.made: list[Any] = []

    def broker(self, *, direct: bool = False, **options: Any) -> Any:
        """A sync broker, through the proxy unless ``direct``."""
        broker = brokerkit.connect(
            self._direct if direct else self._through, prefix=self.prefix, **options
        )
        self.made.append(broker)
        return broker

    @property
    def through_url(self) -> str:
        """The URL of the proxy (give ``prefix=`` :attr:`prefix` with it)."""
        return self._through

    def queue(self, topic: str, group: str = "default") -> str:
        return f"{self.prefix}|{topic}|{group}"


@pytest.fixture
def net(rabbitmq: str) -> Iterator[Net]:
    parsed = BrokerURL.parse(rabbitmq)
    proxy = Proxy((parsed.host or "127.0.0.1", parsed.port or 5672))
    made = Net(rabbitmq, proxy)
    try:
        yield made
    finally:
        proxy.close()  # (the connections die: each close below ends at once)
        close_and_delete(made.made)


def queue_depth(name: str) -> int | None:
    """How many messages wait (ready) in queue ``name``, from RabbitMQ itself; None
    if there is no such queue."""
    with raw_connection() as connection:
        channel = connection.channel()
        try:
            _, ready, _ = channel.queue_declare(name, passive=True)
        except Exception:
            return None
        with contextlib.suppress(Exception):
            channel.close()
        return int(ready)
