"""TopicCollector given an asyncio broker (brokerkit.aio.connect): refused when made,
with an error that says what to give it instead.

Before, it was taken, and every scrape of its registry then failed with
``AttributeError: 'coroutine' object has no attribute 'length'`` (the AsyncBroker's
``inspect`` is a coroutine function, never awaited): /metrics answered 500 for the
whole registry, the application's message counters on it included, and each scrape
left a "coroutine was never awaited" warning.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")

from prometheus_client import CollectorRegistry, generate_latest

import brokerkit
import brokerkit.aio
from brokerkit.instrumentation.prometheus import TopicCollector


@pytest.mark.parametrize("listing", [False, True], ids=["named", "listing"])
def test_an_asyncio_broker_is_refused_with_what_to_do(listing: bool) -> None:
    async def make() -> None:
        async with brokerkit.aio.connect(f"memory://review30-{uuid.uuid4().hex}") as broker:
            topics = broker.topics if listing else ["orders"]
            with pytest.raises(brokerkit.InvalidOption, match=r"brokerkit\.connect"):
                TopicCollector(broker, topics)  # type: ignore[arg-type]

    asyncio.run(make())


def test_a_sync_broker_is_still_read() -> None:
    with brokerkit.connect(f"memory://review30-{uuid.uuid4().hex}") as broker:
        broker.publish("orders", 1)
        registry = CollectorRegistry()
        registry.register(TopicCollector(broker, ["orders"]))
        assert 'brokerkit_topic_length{topic="orders"} 1.0' in generate_latest(registry).decode()
