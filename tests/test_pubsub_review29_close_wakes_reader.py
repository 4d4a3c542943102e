"""redis+pubsub: closing a subscription (or its broker) wakes a receive that waits in a
read of its connection, as memory:// does, instead of waiting that read out.

A fetch is asked to block a second at most (``MAX_FETCH_WAIT``), so every close of a
subscription being read took up to a second, and closing several in turn a second
each. Here the fetches may block for a minute: a close that does not wake the read
waits that minute.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit._subscription
import brokerkit._subscription_async
import brokerkit.aio
from brokerkit.exceptions import BrokerClosed
from tests.redis_server import RedisServer, wait_until

#: How long one fetch may block here: what a close that does not wake it waits.
LONG_FETCH = 60.0
#: Far longer than a woken close takes, far shorter than LONG_FETCH.
WAIT = 20.0


@pytest.fixture(autouse=True)
def long_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokerkit._subscription, "MAX_FETCH_WAIT", LONG_FETCH)
    monkeypatch.setattr(brokerkit._subscription_async, "MAX_FETCH_WAIT", LONG_FETCH)


def _reading(subscription: Any) -> bool:
    """Whether a receive of ``subscription`` waits in a read of its connection."""
    return bool(subscription.state._reading.locked())


async def _until_reading(subscription: Any) -> None:
    """Until a receive of ``subscription`` waits in a read (bound it with a timeout)."""
    while not _reading(subscription):
        await asyncio.sleep(0)  # lets the receive begin its read


@pytest.mark.parametrize("what", ["subscription", "broker"])
@pytest.mark.parametrize("pattern", [False, True], ids=["channel", "pattern"])
def test_a_close_wakes_the_receive_in_another_thread(
    redis_server: RedisServer, what: str, pattern: bool
) -> None:
    broker = brokerkit.connect(redis_server.url("redis+pubsub"))
    subscription = broker.subscribe("t*" if pattern else "t", pattern=pattern)
    outcome: list[BaseException | object] = []

    def receive() -> None:
        try:
            outcome.append(subscription.receive(timeout=None))
        except BaseException as exc:  # checked below
            outcome.append(exc)

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    wait_until(lambda: _reading(subscription), WAIT, "the receive never began to read")
    closer = threading.Thread(target=broker.close if what == "broker" else subscription.close)
    closer.daemon = True
    closer.start()
    closer.join(WAIT)
    assert not closer.is_alive(), f"closing the {what} waited out the receive's read"
    reader.join(WAIT)
    assert isinstance(outcome[0], BrokerClosed)
    client = redis_server.client()
    if pattern:
        assert client.pubsub_numpat() == 0
    else:
        assert client.pubsub_numsub(broker.channel("t"))[0][1] == 0
    broker.close()


@pytest.mark.parametrize("what", ["subscription", "broker"])
def test_a_close_wakes_the_receive_in_another_task(redis_server: RedisServer, what: str) -> None:
    async def main() -> None:
        broker = await brokerkit.aio.connect(redis_server.url("redis+pubsub"))
        subscription = await broker.subscribe("t")
        receive = asyncio.ensure_future(subscription.receive(timeout=None))
        await asyncio.wait_for(_until_reading(subscription), WAIT)
        target = broker if what == "broker" else subscription
        await asyncio.wait_for(target.close(), WAIT)
        with pytest.raises(BrokerClosed):
            await asyncio.wait_for(receive, WAIT)
        await broker.close()

    asyncio.run(main())
