"""Closing a sync NATS broker while a subscribe of another thread waits for the lost
connection wakes that subscribe, which raises BrokerClosed (review 30).

The close waited for the subscribes under way (5 s at most) before it closed the
connection, the only thing that woke a request waiting for the reconnection: the
close took those 5 s, and the subscribe, woken by the connection's close, raised
``ConnectionFailed`` rather than the ``BrokerClosed`` that ``Broker.close`` and
docs/asyncio.md promise. The close now wakes what waits for the connection as it
begins, and a subscribe it interrupts raises ``BrokerClosed``.

(The wait for the subscribes is made 60 s long here, so that a close that still
waits it out fails the test's guard rather than only taking 5 s.)
"""

from __future__ import annotations

import threading

import pytest

import brokerkit
import brokerkit._broker
import brokerkit._broker_async
from brokerkit.backends.nats._client import NatsClient
from brokerkit.exceptions import BrokerClosed
from tests.nats_server import nats_address
from tests.test_nats_review30_core_close_publish import _Cuttable, _Lost, lost

__all__ = ["lost"]  # fixture

#: Seconds any wait here may take at most: the guard of a test that would hang.
GUARD = 20.0


@pytest.fixture
def long_subscribe_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close's wait for the subscribes under way, 60 s (beyond the guard)."""
    monkeypatch.setattr(brokerkit._broker, "_SUBSCRIBE_WAIT", 60.0)
    monkeypatch.setattr(brokerkit._broker_async, "_SUBSCRIBE_WAIT", 60.0)


@pytest.fixture
def waiting(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a call waits for the NATS connection to come back (the close must then
    wake it: one that only begins to wait after the close began is not this test's)."""
    entered = threading.Event()
    wait_connected = NatsClient.wait_connected

    async def noted(self: NatsClient, until: float, since: int | None = None) -> bool:
        entered.set()
        return await wait_connected(self, until, since)

    monkeypatch.setattr(NatsClient, "wait_connected", noted)
    return entered


@pytest.mark.usefixtures("long_subscribe_wait")
def test_close_wakes_a_subscribe_waiting_for_the_connection(
    nats_url: str, nats_prefix: str, lost: _Lost, waiting: threading.Event
) -> None:
    proxy = _Cuttable(nats_address(nats_url))
    try:
        url = f"nats://127.0.0.1:{proxy.port}?prefix={nats_prefix}&reconnect_timeout=60"
        broker = brokerkit.connect(url)
        broker.publish("jobs", "made the stream")
        proxy.cut()
        assert lost.lost.wait(GUARD), "the connection was not lost"
        raised: list[BaseException] = []

        def subscribe() -> None:
            try:
                broker.subscribe("jobs", group="g")
            except BaseException as exc:  # (what it raises is the test)
                raised.append(exc)

        subscriber = threading.Thread(target=subscribe)
        waiting.clear()  # (the subscribe's own wait, from here on)
        subscriber.start()
        assert waiting.wait(GUARD), "the subscribe did not wait for the connection"
        closer = threading.Thread(target=broker.close)
        closer.start()
        closer.join(GUARD)
        assert not closer.is_alive(), "the close waited for the subscribe, not woken"
        subscriber.join(GUARD)
        assert not subscriber.is_alive(), "the subscribe did not end with the close"
        assert len(raised) == 1
        assert isinstance(raised[0], BrokerClosed), repr(raised[0])
    finally:
        proxy.close()
