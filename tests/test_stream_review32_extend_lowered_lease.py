"""redis+stream: ``extend(seconds)`` holds the delivery for ``seconds`` against the
group's lease length as it is now, not as it was when the subscription joined. The
page says to lower a group's lease length (``HSET <prefix>:{<topic>}:vt <group> <ms>``)
once its long-lease members are gone; a member that joined while they were there kept
their length, so its ``extend(20)`` set the entry's idle time to 600 - 20 seconds, past
the lowered 30 s lease: the next fetch of any other member claimed the delivery at
once, while its holder was still working on it (it was processed twice, and the
holder's ack raised StaleDelivery). Against a real redis-server, sync and asyncio."""

from __future__ import annotations

import asyncio

import redis

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget

TOPIC = "orders"


def test_extend_counts_against_the_lowered_lease(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    url = redis_target.url("redis+stream")
    lease_key = f"{prefix}:{{{TOPIC}}}:vt"
    with (
        brokerkit.connect(url, prefix=prefix, visibility_timeout=600) as long,
        brokerkit.connect(url, prefix=prefix, visibility_timeout=30) as short,
        brokerkit.connect(url, prefix=prefix, visibility_timeout=30) as other,
    ):
        long.subscribe(TOPIC, group="g").close()  # a long-lease member, gone now
        holder = short.subscribe(TOPIC, group="g")  # joined while it was there
        redis_client.hset(lease_key, "g", 30_000)  # the page's advice, once it is gone
        short.publish(TOPIC, {"n": 1})
        delivery = holder.receive(timeout=5)
        assert delivery is not None
        delivery.extend(20)
        stolen = other.subscribe(TOPIC, group="g").receive(timeout=1)
        assert stolen is None, "another member took a delivery just extended for 20 s"
        delivery.ack()


def test_asyncio_extend_counts_against_the_lowered_lease(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    url = redis_target.url("redis+stream")
    lease_key = f"{prefix}:{{{TOPIC}}}:vt"

    async def main() -> None:
        async with (
            brokerkit.aio.connect(url, prefix=prefix, visibility_timeout=600) as long,
            brokerkit.aio.connect(url, prefix=prefix, visibility_timeout=30) as short,
            brokerkit.aio.connect(url, prefix=prefix, visibility_timeout=30) as other,
        ):
            await (await long.subscribe(TOPIC, group="g")).close()
            holder = await short.subscribe(TOPIC, group="g")
            await asyncio.to_thread(redis_client.hset, lease_key, "g", 30_000)
            await short.publish(TOPIC, {"n": 1})
            delivery = await holder.receive(timeout=5)
            assert delivery is not None
            await delivery.extend(20)
            thief = await other.subscribe(TOPIC, group="g")
            assert await thief.receive(timeout=1) is None, "a delivery just extended was taken"
            await delivery.ack()

    asyncio.run(asyncio.wait_for(main(), 60))
