"""redis+pubsub: a publish that began before the broker's close leaves no connection
open behind the close.

A publish checks that the broker is open, then sends on the broker's own connection.
A close from another thread (or from a publish hook, as here, which makes the race
deterministic) that ran in between disconnected that connection and forgot it; the
publish then made a new one, which nothing would ever close: a connection to Redis
left open by a closed broker, for the life of the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit._publishing import build_messages
from brokerkit.exceptions import BrokerClosed
from tests.conftest import registered
from tests.redis_server import RedisServer


def _others(client: redis.Redis) -> list[dict[str, Any]]:
    """The connections to the server but ``client``'s own."""
    me = client.client_id()
    return [c for c in client.client_list() if int(c["id"]) != me]


class _CloseWhenPublishing:
    """Closes its broker as a publish of it begins: after the publish's open check."""

    def __init__(self) -> None:
        self.broker: Any = None

    @brokerkit.hookimpl
    def brokerkit_publish_start(
        self, broker: Any, topic: str, headers: dict[str, str], count: int, scope: dict[str, Any]
    ) -> None:
        if broker is self.broker:
            broker.close()


@pytest.fixture
def closer() -> Iterator[_CloseWhenPublishing]:
    yield from registered(_CloseWhenPublishing())


def test_a_publish_that_began_before_the_close_leaves_no_connection(
    redis_server: RedisServer, closer: _CloseWhenPublishing
) -> None:
    client = redis_server.client()
    broker = brokerkit.connect(redis_server.url("redis+pubsub"))
    broker.publish("warm", "the broker's own connection is made")
    closer.broker = broker
    with pytest.raises(BrokerClosed):
        broker.publish("t", "after the close began")
    assert broker.closed
    assert _others(client) == []


def test_an_asyncio_publish_past_its_open_check_leaves_no_connection(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()

    async def main() -> None:
        broker = await brokerkit.aio.connect(redis_server.url("redis+pubsub"))
        await broker.publish("warm", "the broker's own connection is made")
        messages = build_messages(broker, "t", ["late"], {}, None)
        await broker.close()
        # What a publish that passed its open check before the close goes on to do.
        with pytest.raises(BrokerClosed):
            await broker._publish("t", messages)

    asyncio.run(main())
    assert _others(client) == []
