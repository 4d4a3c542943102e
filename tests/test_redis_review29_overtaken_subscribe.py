"""redis+list, redis+stream: a subscribe that the broker's close overtook opens no
connection after the close.

close() waits a few seconds for the subscribes under way, then closes what it knows
and disconnects. A subscribe that ended after that raises ``BrokerClosed`` and closes
the subscription it made; that close (redis+list's ZREM of its heartbeat, redis+stream's
removal of the idle consumer) and redis+stream's joining of the group went through
the closed client, and redis-py opened a new pooled connection for them that nobody
would ever close.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit._broker
import brokerkit._broker_async
import brokerkit.aio
from brokerkit.exceptions import BrokerClosed
from tests.redis_server import RedisServer, wait_until

#: Far longer than a subscribe, or the server's noticing a closed connection, takes.
WAIT = 20.0
#: A group with a reaper (redis+stream starts one per broker at its first subscribe).
URLS = ["redis+list", "redis+stream", "redis+stream?max_deliveries=3"]


def _others(client: redis.Redis) -> int:
    """How many connections the server has besides ``client``'s own."""
    me = client.client_id()
    return sum(1 for entry in client.client_list() if int(entry["id"]) != me)


def _hold(broker: Any, released: threading.Event) -> None:
    """Make ``broker``'s subscribes wait for ``released`` before they begin, as a
    subscribe riding out a server restart waits: the close overtakes them."""
    subscribe = broker._subscribe

    def held(subscription: Any) -> Any:
        assert released.wait(WAIT)
        return subscribe(subscription)

    broker._subscribe = held


async def _until_subscribing(broker: Any) -> None:
    """Until a subscribe of ``broker`` is under way (bound it with a timeout)."""
    while broker._subscribing != 1:
        await asyncio.sleep(0)


@pytest.mark.parametrize("url", URLS)
def test_a_subscribe_the_close_overtook_opens_no_connection(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    # How long close() waits for the subscribes under way (5 s): shortened, so that it
    # gives up on the one held up below.
    monkeypatch.setattr(brokerkit._broker, "_SUBSCRIBE_WAIT", 0.1)
    client = redis_server.client()
    scheme, _, query = url.partition("?")
    broker = brokerkit.connect(redis_server.url(scheme) + (f"?{query}" if query else ""))
    broker.publish("t", "the topic exists")
    released = threading.Event()
    _hold(broker, released)
    outcome: list[BaseException | object] = []

    def subscribe() -> None:
        try:
            outcome.append(broker.subscribe("t", group="g"))
        except BaseException as exc:  # checked below
            outcome.append(exc)

    subscriber = threading.Thread(target=subscribe, daemon=True)
    subscriber.start()
    wait_until(lambda: broker._subscribing == 1, WAIT, "the subscribe never began")
    broker.close()
    released.set()
    subscriber.join(WAIT)
    assert not subscriber.is_alive()
    assert isinstance(outcome[0], BrokerClosed)
    wait_until(lambda: _others(client) == 0, WAIT, "a connection was left open after close")


@pytest.mark.parametrize("url", URLS)
def test_a_subscribe_the_close_overtook_opens_no_connection_under_asyncio(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setattr(brokerkit._broker_async, "_SUBSCRIBE_WAIT", 0.1)
    client = redis_server.client()
    scheme, _, query = url.partition("?")

    async def main() -> None:
        broker = await brokerkit.aio.connect(
            redis_server.url(scheme) + (f"?{query}" if query else "")
        )
        await broker.publish("t", "the topic exists")
        released = asyncio.Event()
        subscribe = broker._subscribe

        async def held(subscription: Any) -> None:
            await asyncio.wait_for(released.wait(), WAIT)
            await subscribe(subscription)

        broker._subscribe = held
        subscriber = asyncio.ensure_future(broker.subscribe("t", group="g"))
        await asyncio.wait_for(_until_subscribing(broker), WAIT)
        await broker.close()
        released.set()
        with pytest.raises(BrokerClosed):
            await asyncio.wait_for(subscriber, WAIT)

    asyncio.run(main())
    wait_until(lambda: _others(client) == 0, WAIT, "a connection was left open after close")
