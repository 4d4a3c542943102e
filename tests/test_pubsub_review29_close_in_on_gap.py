"""redis+pubsub: closing from the ``on_gap`` callback ends the subscription, never
hangs it.

``on_gap`` runs in the consuming thread (task), inside the receive that found the
gap. An application that answers a gap by closing the subscription (or the whole
broker) to start over from its source of truth used to hang for ever: the close
waited for the receive's fetch to end, and the fetch waited for the callback.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.pubsub import Gap
from brokerkit.exceptions import BrokerClosed
from tests.redis_server import RedisServer

#: Far longer than a receive that finds a killed connection takes; only a hang waits it.
WAIT = 20.0


def _kill_subscribers(client: redis.Redis) -> None:
    """Make every pub/sub connection lose its connection: a gap to report."""
    assert client.client_kill_filter(_type="pubsub") >= 1


def _subscribers(client: redis.Redis, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


@pytest.mark.parametrize("what", ["subscription", "broker"])
def test_closing_from_on_gap_ends_the_receive(redis_server: RedisServer, what: str) -> None:
    client = redis_server.client()
    closing: dict[str, Any] = {}
    gaps: list[Gap] = []

    def on_gap(gap: Gap) -> None:
        gaps.append(gap)
        closing[what].close()

    broker = brokerkit.connect(redis_server.url("redis+pubsub"), on_gap=on_gap)
    subscription = broker.subscribe("t")
    closing.update(subscription=subscription, broker=broker)
    _kill_subscribers(client)
    outcome: list[BaseException | object] = []

    def receive() -> None:
        try:
            outcome.append(subscription.receive(timeout=WAIT))
        except BaseException as exc:  # checked below
            outcome.append(exc)

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    reader.join(WAIT)
    assert not reader.is_alive(), f"closing the {what} from on_gap hung the receive"
    assert len(gaps) == 1
    assert isinstance(outcome[0], BrokerClosed)
    subscription.close()  # waits for the closing begun in the callback
    broker.close()
    assert subscription.closed and broker.closed
    assert _subscribers(client, broker.channel("t")) == 0


@pytest.mark.parametrize("what", ["subscription", "broker"])
def test_closing_from_on_gap_ends_the_receive_under_asyncio(
    redis_server: RedisServer, what: str
) -> None:
    """The close awaited in a task the callback starts returns once the closing has
    ended, as any close does: that task copies the receive's context, which must
    not send its close down the threads' "from within my own fetch" way."""
    client = redis_server.client()
    when_closed: list[int] = []

    async def main() -> str:
        closing: dict[str, Any] = {}
        ended: list[asyncio.Task[None]] = []

        async def close_it() -> None:
            await closing[what].close()
            when_closed.append(_subscribers(client, closing["broker"].channel("t")))

        def on_gap(gap: Gap) -> None:
            # The callback is sync: the close it starts runs as a task of the loop.
            ended.append(asyncio.ensure_future(close_it()))

        broker = await brokerkit.aio.connect(redis_server.url("redis+pubsub"), on_gap=on_gap)
        subscription = await broker.subscribe("t")
        closing.update(subscription=subscription, broker=broker)
        _kill_subscribers(client)
        with pytest.raises(BrokerClosed):
            await asyncio.wait_for(subscription.receive(timeout=WAIT), WAIT)
        await asyncio.wait_for(asyncio.gather(*ended), WAIT)
        assert when_closed == [0], "the close from the on_gap task returned before its end"
        await broker.close()
        return broker.channel("t")

    channel = asyncio.run(main())
    assert _subscribers(client, channel) == 0
