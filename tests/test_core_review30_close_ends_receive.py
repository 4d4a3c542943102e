"""A receive that a broker's close cuts short raises BrokerClosed (review 30).

With the server gone, a receive under way retries its fetch for ``reconnect_timeout``.
Since the close wakes such retries as it begins (the ``_wake_waits`` hook), the fetch
gave up with ``ConnectionFailed("... the broker is closing")``, and a consumer loop
catching ``BrokerClosed`` at shutdown, as docs/asyncio.md says a receive ends, crashed
instead. The receive now raises ``BrokerClosed``, from the fetch's error.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import BrokerClosed
from tests.redis_server import RedisServer
from tests.test_redis_review30_close_wakes_retries import GUARD, RECONNECT, retrying
from tests.waiting import call_in_thread

__all__ = ["retrying"]  # fixture

SCHEMES = ["redis+stream"]  # (a redis+list receive does not retry: it fails at once)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sync_a_receive_the_close_cuts_short_raises_broker_closed(
    redis_server: RedisServer, prefix: str, retrying: threading.Event, scheme: str
) -> None:
    url = f"{redis_server.url(scheme)}?prefix={prefix}&reconnect_timeout={RECONNECT}"
    broker = brokerkit.connect(url)
    try:
        subscription = broker.subscribe("jobs", group="g")
        redis_server.kill()
        receiver, raised = call_in_thread(lambda: subscription.receive(timeout=GUARD * 4))
        assert retrying.wait(GUARD), "the receive did not retry"
        closer = threading.Thread(target=broker.close, daemon=True)
        closer.start()
        closer.join(GUARD)
        receiver.join(GUARD)
        assert not receiver.is_alive(), "the receive went on after the close"
        assert len(raised) == 1, raised
        assert isinstance(raised[0], BrokerClosed), repr(raised[0])
    finally:
        broker.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_async_a_receive_the_close_cuts_short_raises_broker_closed(
    redis_server: RedisServer, prefix: str, retrying: threading.Event, scheme: str
) -> None:
    url = f"{redis_server.url(scheme)}?prefix={prefix}&reconnect_timeout={RECONNECT}"

    async def scenario() -> None:
        broker = await brokerkit.aio.connect(url)
        try:
            subscription = await broker.subscribe("jobs", group="g")
            redis_server.kill()
            task = asyncio.ensure_future(subscription.receive(timeout=GUARD * 4))
            assert await asyncio.to_thread(retrying.wait, GUARD), "the receive did not retry"
            await asyncio.wait_for(asyncio.shield(broker.close()), GUARD)
            done, _ = await asyncio.wait((task,), timeout=GUARD)
            assert done, "the receive went on after the close"
            error = task.exception()
            assert isinstance(error, BrokerClosed), repr(error)
        finally:
            await asyncio.wait_for(broker.close(), GUARD)

    asyncio.run(scenario())
