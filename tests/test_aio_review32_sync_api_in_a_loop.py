"""The sync API called from a coroutine, inside a running event loop (docs/asyncio.md):
it works on every backend, a NATS broker through its loop bridge's own loop too, and
blocks the calling loop for each call's wait; a sync broker made there and dropped
unclosed is closed without that loop."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid

import pytest

import brokerkit
from tests.conftest import RedisTarget

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0


@pytest.fixture(params=["memory", "redis+stream", "nats"])
def url(request: pytest.FixtureRequest) -> str:
    name = f"aio_review32_sync_{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        return f"memory://{name}"
    if request.param == "nats":
        return (
            f"{request.getfixturevalue('nats_url')}?prefix={request.getfixturevalue('nats_prefix')}"
        )
    target: RedisTarget = request.getfixturevalue("redis_target")
    return target.url("redis+stream", prefix=name)


def test_the_sync_api_works_inside_a_running_loop(url: str) -> None:
    async def main() -> list[object]:
        asyncio.get_running_loop()  # (inside a running loop)
        with (
            brokerkit.connect(url) as broker,
            broker.subscribe("t", group="g") as subscription,
        ):
            broker.publish_many("t", [1, 2])
            bodies = []
            for _ in range(2):
                delivery = subscription.receive(GUARD)
                assert delivery is not None
                bodies.append(delivery.body)
                delivery.ack()
            assert subscription.receive(0) is None
        return bodies

    assert asyncio.run(main()) == [1, 2]


def test_a_sync_broker_dropped_unclosed_inside_a_running_loop_is_closed(url: str) -> None:
    closed: list[bool] = []

    async def main() -> None:
        broker = brokerkit.connect(url)
        broker.publish("t", "x")
        inner = getattr(broker, "inner", None)  # a loop bridge's asyncio broker
        del broker
        gc.collect()
        if inner is not None:  # closed in a thread of its own (not on this loop)
            for thread in threading.enumerate():
                if thread.name == "brokerkit-release":
                    await asyncio.to_thread(thread.join, GUARD)
            closed.append(inner.closed)

    asyncio.run(main())
    assert all(closed)
