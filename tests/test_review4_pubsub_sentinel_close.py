"""Closing a broker on a Sentinel deployment closes its connections to the sentinels
too (all three Redis backends share the client that makes them), and redis+pubsub
refuses the replica wait options, which it has nothing to apply to."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption
from tests.redis_cluster import SentinelSet

SCHEMES = ["redis+pubsub", "redis+list", "redis+stream"]


def _named_on_sentinels(sentinels: SentinelSet, name: str) -> int:
    """How many connections named ``name`` the sentinels have."""
    count = 0
    for sentinel in sentinels.sentinels:
        client = redis.Redis(host="127.0.0.1", port=sentinel.port, socket_timeout=5)
        try:
            count += sum(1 for c in client.client_list() if c.get("name") == name)
        finally:
            client.close()
    return count


@pytest.mark.parametrize("scheme", SCHEMES)
def test_close_closes_the_connections_to_the_sentinels(
    redis_sentinel: SentinelSet, prefix: str, scheme: str
) -> None:
    name = f"bk-close-{uuid.uuid4().hex[:8]}"
    url = redis_sentinel.url(scheme, client_name=name)
    closed = []  # kept referenced: nothing is closed by the garbage collector
    for _ in range(3):
        broker = brokerkit.connect(url, prefix=prefix)
        broker.publish("t", "x")
        assert _named_on_sentinels(redis_sentinel, name) >= 1
        broker.purge("t")
        broker.close()
        closed.append(broker)
    assert _named_on_sentinels(redis_sentinel, name) == 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_async_close_closes_the_connections_to_the_sentinels(
    redis_sentinel: SentinelSet, prefix: str, scheme: str
) -> None:
    name = f"bk-close-{uuid.uuid4().hex[:8]}"
    url = redis_sentinel.url(scheme, client_name=name)

    async def main() -> list[object]:
        closed: list[object] = []
        for _ in range(3):
            broker = await brokerkit.aio.connect(url, prefix=prefix)
            await broker.publish("t", "x")
            if scheme == "redis+pubsub":
                subscription = await broker.subscribe("t")
                await subscription.close()
            await broker.purge("t")
            await broker.close()
            closed.append(broker)
        return closed

    closed = asyncio.run(asyncio.wait_for(main(), 60))
    assert closed
    assert _named_on_sentinels(redis_sentinel, name) == 0


@pytest.mark.parametrize(
    ("query", "keywords"),
    [
        ("replicas=1", {}),
        ("replica_timeout=2", {}),
        ("", {"replicas": 1}),
        ("", {"replica_timeout": 9}),
    ],
)
def test_pubsub_refuses_the_replica_wait(query: str, keywords: dict[str, object]) -> None:
    with pytest.raises(InvalidOption, match="stores nothing") as caught:
        brokerkit.connect(f"redis+pubsub://localhost/0?{query}", **keywords)
    assert "redis+stream" in str(caught.value)
