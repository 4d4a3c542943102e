"""redis+pubsub's ``on_gap`` written ``async def``.

Under ``brokerkit.aio`` it is awaited before the receive that found the gap returns
(it was called and its coroutine dropped: the callback never ran, and Python warned
only that a coroutine was never awaited). The sync broker, where nothing could await
it, refuses one at connect.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.pubsub import Gap
from brokerkit.exceptions import InvalidOption
from tests.pubsub_gaps import kill_subscriber
from tests.redis_server import RedisServer

WAIT = 5.0


def test_an_async_on_gap_is_awaited_under_asyncio(redis_server: RedisServer) -> None:
    told: list[Gap] = []
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()

    async def resync(gap: Gap) -> None:
        await asyncio.sleep(0)  # (a real one awaits its database)
        told.append(gap)

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        async with brokerkit.aio.connect(url, on_gap=resync) as broker:
            subscription = await broker.subscribe("news", consumer=consumer)
            kill_subscriber(client, consumer)
            end = time.monotonic() + 20
            while not broker.gaps(subscription):
                assert time.monotonic() < end, "no gap was reported"
                assert await subscription.receive(timeout=0.5) is None
            # awaited to its end before the receive that found the gap returned
            assert [(gap.topic, gap.number) for gap in told] == [("news", 1)]
            assert told[0] is broker.gaps(subscription)[0]
            assert (await broker.publish_counted("news", "after")).receivers == 1
            delivery = await subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == "after"

    try:
        asyncio.run(main())
    finally:
        client.close()


def test_a_plain_on_gap_is_still_called_under_asyncio(redis_server: RedisServer) -> None:
    told: list[Gap] = []
    consumer = f"review33-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        async with brokerkit.aio.connect(url, on_gap=told.append) as broker:
            subscription = await broker.subscribe("news", consumer=consumer)
            kill_subscriber(client, consumer)
            end = time.monotonic() + 20
            while not broker.gaps(subscription):
                assert time.monotonic() < end, "no gap was reported"
                assert await subscription.receive(timeout=0.5) is None
            assert told == list(broker.gaps(subscription))

    try:
        asyncio.run(main())
    finally:
        client.close()


async def _resync(gap: Gap) -> None:
    """An async on_gap."""


class _AsyncCallable:
    async def __call__(self, gap: Gap) -> None:
        """An object whose __call__ is an async def."""


@pytest.mark.parametrize(
    "on_gap",
    [_resync, functools.partial(_resync), _AsyncCallable()],
    ids=["async def", "partial", "async __call__"],
)
def test_the_sync_broker_refuses_an_async_on_gap(on_gap: object) -> None:
    with pytest.raises(InvalidOption, match=r"on_gap .*async.*brokerkit\.aio"):
        brokerkit.connect("redis+pubsub://127.0.0.1:1/0", on_gap=on_gap)
