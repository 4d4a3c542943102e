"""nats+core:// publishing while the server is down, against a server of the test's own
(killed and restarted on its port; the others' stays up).

nats-py buffers what is published while it reconnects, and its ``flush()`` is then a
no-op: a publish used to return as if sent, and the message was lost (or went out
later, after the caller had moved on). A publish waits up to ``reconnect_timeout`` for
the connection to come back, then raises ``ConnectionFailed``, having sent nothing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import ConnectionFailed
from tests.nats_server import NatsServer


class _Connection(logging.Handler):
    """Told by ``brokerkit.nats``'s log lines when the connection is lost and back."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lost = threading.Event()
        self.back = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "lost" in text:
            self.lost.set()
        elif "is back" in text:
            self.back.set()


@contextmanager
def _watching() -> Iterator[_Connection]:
    logger = logging.getLogger("brokerkit.nats")
    handler, level = _Connection(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def server() -> Iterator[NatsServer]:
    server = NatsServer()
    try:
        yield server.start()
    finally:
        server.stop()


def _core(server: NatsServer) -> str:
    return server.url.replace("nats://", "nats+core://", 1)


def test_nats_core_review5_a_publish_while_the_server_is_down_raises_and_sends_nothing(
    server: NatsServer,
) -> None:
    with (
        _watching() as connection,
        brokerkit.connect(_core(server), prefix="outage", reconnect_timeout=1) as broker,
    ):
        subscription = broker.subscribe("news")
        broker.publish("news", "before")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "before"

        server.kill()
        assert connection.lost.wait(10), "the client never noticed the server was gone"
        started = time.monotonic()
        with pytest.raises(ConnectionFailed, match="reconnect_timeout=1") as failed:
            broker.publish("news", "during the outage")
        assert time.monotonic() - started >= 0.9, "it did not wait for a reconnection"
        assert f"127.0.0.1:{server.port}" in str(failed.value)
        with pytest.raises(ConnectionFailed):
            broker.publish_many("news", ["during, one", "during, two"])

        server.start()
        assert connection.back.wait(10), "the client never came back"
        broker.publish("news", "after")
        # Nothing of the failed publishes was kept to go out on the reconnection.
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "after"
        assert subscription.receive(timeout=0.2) is None


def test_nats_core_review5_a_publish_waits_for_a_server_that_comes_back_in_time(
    server: NatsServer,
) -> None:
    async def main() -> None:
        async with await brokerkit.aio.connect(
            _core(server), prefix="outage", reconnect_timeout=30
        ) as broker:
            subscription = await broker.subscribe("news")
            with _watching() as connection:
                server.kill()
                assert await asyncio.to_thread(connection.lost.wait, 10)
                publishing = asyncio.ensure_future(broker.publish("news", "during"))
                done, _ = await asyncio.wait({publishing}, timeout=0.5)
                assert not done, "publish returned while the server was down"
                await asyncio.to_thread(server.start)
                await asyncio.wait_for(publishing, 20)
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None and delivery.body == "during"

    asyncio.run(main())
