"""redis+stream: a dead-letter topic whose key another program wrote as another Redis
type is named when a dead-letter fails on it: a nack(requeue=False) raises
IncompatibleTopic naming the dead-letter topic and its key (the entry stays pending, and
once the key is deleted it is dead-lettered), and the background dead-lettering of an
entry past max_deliveries logs the same. Before, the nack said "a key ... is stored in a
Redis key of another type; use another topic or prefix" and the background round blamed
the topic itself ('orders', whose stream was fine). Against a real redis-server, sync and
asyncio."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import IncompatibleTopic
from tests.conftest import RedisTarget

TOPIC = "orders"


def _check_named(text: str, key: str) -> None:
    assert f"the dead-letter topic '{TOPIC}.dlq'" in text, text
    assert f"DEL {key}" in text, text


def test_a_rejected_delivery_names_the_dead_letter_key(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    stream, dlq = f"{prefix}:{{{TOPIC}}}", f"{prefix}:{{{TOPIC}}}.dlq"
    with brokerkit.connect(redis_target.url("redis+stream"), prefix=prefix) as broker:
        subscription = broker.subscribe(TOPIC, group="g")
        broker.publish(TOPIC, {"n": 1})
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        redis_client.set(dlq, "another program's")
        with pytest.raises(IncompatibleTopic) as raised:
            delivery.nack(requeue=False)
        _check_named(str(raised.value), dlq)
        assert redis_client.xpending(stream, "g")["pending"] == 1
        redis_client.delete(dlq)
        delivery.nack(requeue=False)
        assert [f[b"body"] for _, f in redis_client.xrange(dlq)] == [b'{"n":1}']


def test_the_background_dead_lettering_names_the_dead_letter_key(
    redis_target: RedisTarget,
    redis_client: redis.Redis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream, dlq = f"{prefix}:{{{TOPIC}}}", f"{prefix}:{{{TOPIC}}}.dlq"
    url = redis_target.url("redis+stream")
    with brokerkit.connect(url, prefix=prefix, visibility_timeout=1, max_deliveries=1) as broker:
        broker.create_group(TOPIC, "g")
        broker.publish(TOPIC, {"n": 1})
        # another member read it and died: past max_deliveries once its lease runs out
        redis_client.xreadgroup("g", "gone", {stream: ">"}, count=1)
        redis_client.set(dlq, "another program's")
        caplog.set_level(logging.WARNING, logger="brokerkit.redis")
        # starts the background dead-lettering (of the groups of subscriptions kept)
        subscription = broker.subscribe(TOPIC, group="g")
        deadline = time.monotonic() + 20
        while not any("dead-letter" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the background round never failed"
            time.sleep(0.05)
        text = next(r.getMessage() for r in caplog.records if "dead-letter" in r.getMessage())
        _check_named(text, dlq)
        assert redis_client.xpending(stream, "g")["pending"] == 1
        subscription.close()


def test_asyncio_a_rejected_delivery_names_the_dead_letter_key(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    stream, dlq = f"{prefix}:{{{TOPIC}}}", f"{prefix}:{{{TOPIC}}}.dlq"

    async def main() -> None:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            subscription = await broker.subscribe(TOPIC, group="g")
            await broker.publish(TOPIC, {"n": 1})
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            await asyncio.to_thread(redis_client.set, dlq, "another program's")
            with pytest.raises(IncompatibleTopic) as raised:
                await delivery.nack(requeue=False)
            _check_named(str(raised.value), dlq)
            pending = await asyncio.to_thread(redis_client.xpending, stream, "g")
            assert pending["pending"] == 1
            await asyncio.to_thread(redis_client.delete, dlq)
            await delivery.nack(requeue=False)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert [f[b"body"] for _, f in redis_client.xrange(dlq)] == [b'{"n":1}']
