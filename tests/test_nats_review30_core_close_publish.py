"""nats+core: closing a sync broker while a publish of another thread waits for the
lost connection ends that publish with ConnectionFailed (review 30).

The publish looked at the connection every 50 ms: the close, which the bridge ends by
cancelling what still runs on its loop, came first, and the publish raised
``concurrent.futures.CancelledError``, no BrokerError, to a caller that catches
those (the JetStream broker's raised ConnectionFailed: "the NATS connection ... is
closed"). The publish now waits for the connection as JetStream requests do, woken
by the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

import brokerkit
from brokerkit.exceptions import BrokerError, ConnectionFailed
from tests.nats_server import nats_address
from tests.proxies import Listener, pipe
from tests.waiting import wait_until

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 20.0


class _Cuttable(Listener):
    """A TCP proxy to ``target``; :meth:`cut` drops its connections and refuses new
    ones (the client cannot reconnect)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.down = threading.Event()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        if self.down.is_set():
            client.close()
            return
        upstream = socket.create_connection(self._target)
        self.keep(upstream)
        self.spawn(pipe, client, upstream)
        self.spawn(pipe, upstream, client)

    def cut(self) -> None:
        self.down.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Lost(logging.Handler):
    """Set once ``brokerkit.nats`` logs the connection lost."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lost = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "lost; reconnecting" in record.getMessage():
            self.lost.set()


@pytest.fixture
def lost() -> Iterator[_Lost]:
    handler = _Lost()
    logger = logging.getLogger("brokerkit.nats")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _publishing(broker: brokerkit.Broker) -> bool:
    """Whether a publish waits on the broker's loop."""

    async def tasks() -> bool:
        return any(
            "_publish" in getattr(task.get_coro(), "__qualname__", "")
            for task in asyncio.all_tasks()
        )

    return bool(broker._loop.run(tasks()))  # type: ignore[attr-defined]


@pytest.mark.parametrize("run", range(3))
def test_a_publish_waiting_for_the_connection_ends_with_connection_failed_on_close(
    nats_url: str, nats_prefix: str, lost: _Lost, run: int
) -> None:
    proxy = _Cuttable(nats_address(nats_url))
    try:
        url = f"nats+core://127.0.0.1:{proxy.port}?prefix={nats_prefix}&reconnect_timeout=60"
        broker = brokerkit.connect(url)
        broker.publish("jobs", "connected")
        proxy.cut()
        assert lost.lost.wait(GUARD), "the connection was not lost"
        raised: list[BaseException] = []

        def publish() -> None:
            try:
                broker.publish("jobs", "while it is down")
            except BaseException as exc:  # (what it raises is the test)
                raised.append(exc)

        thread = threading.Thread(target=publish)
        thread.start()
        wait_until(lambda: _publishing(broker), "the publish to wait", within=GUARD)
        broker.close()
        thread.join(GUARD)
        assert not thread.is_alive(), "the publish did not end with the close"
        assert len(raised) == 1
        assert isinstance(raised[0], BrokerError), repr(raised[0])
        assert isinstance(raised[0], ConnectionFailed), repr(raised[0])
    finally:
        proxy.close()
