"""nats+core:// against the real NATS server: plain subjects, at most once."""

from __future__ import annotations

import asyncio

import nats
import pytest

import brokerkit
import brokerkit.aio


@pytest.fixture
def core_url(nats_url: str) -> str:
    return nats_url.replace("nats://", "nats+core://", 1)


def test_every_listener_hears_and_a_late_one_hears_nothing_before_it(
    core_url: str, nats_prefix: str
) -> None:
    with brokerkit.connect(core_url, prefix=nats_prefix) as broker:
        first, second = broker.subscribe("room"), broker.subscribe("room")
        broker.publish("room", "hello")
        late = broker.subscribe("room")
        for subscription in (first, second):
            delivery = subscription.receive(timeout=5)
            assert delivery is not None and delivery.body == "hello"
        assert late.receive(timeout=0.2) is None  # core NATS keeps nothing
        info = broker.inspect("room")
        assert (info.length, info.in_flight) == (0, 0)


def test_a_plain_nats_publisher_is_heard_raw(core_url: str, nats_prefix: str) -> None:
    with brokerkit.connect(core_url, prefix=nats_prefix) as broker:
        subscription = broker.subscribe("room.a")

        async def publish() -> None:
            nc = await nats.connect(core_url.replace("nats+core://", "nats://", 1))
            await nc.publish(f"{nats_prefix}.room.a", b'{"text": "hi"}')
            await nc.flush()
            await nc.close()

        asyncio.run(publish())
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        assert delivery.payload == b'{"text": "hi"}'


def test_a_pattern_hears_the_topics_it_matches_only(core_url: str, nats_prefix: str) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(core_url, prefix=nats_prefix) as broker:
            rooms = await broker.subscribe("chat:room:*", pattern=True)
            await broker.publish("chat:room:1", "one")
            await broker.publish("chat:lobby", "no")
            await broker.publish("chat:room:2", "two")
            got = [await rooms.receive(timeout=5) for _ in range(2)]
            assert [(d.topic, d.body) for d in got if d] == [
                ("chat:room:1", "one"),
                ("chat:room:2", "two"),
            ]
            assert await rooms.receive(timeout=0.2) is None

    asyncio.run(main())


def test_groups_are_not_offered(core_url: str, nats_prefix: str) -> None:
    with (
        brokerkit.connect(core_url, prefix=nats_prefix) as broker,
        pytest.raises(brokerkit.Unsupported, match="COMPETING"),
    ):
        broker.subscribe("room", group="workers")
