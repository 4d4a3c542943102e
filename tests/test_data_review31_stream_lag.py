"""redis+stream inspect where Redis gives no lag (``XINFO GROUPS`` lag nil: Redis 6.2,
or 7.x after an ``XDEL`` past the group's position): the entries after the group's
position were counted by one Lua script with no bound, reading every entry (bodies and
all) while Redis served nobody else. Now a group at the last entry has lag 0 and one
before the first the stream's length, nothing read; otherwise the count stops at
LAG_COUNT_LIMIT, reported as that with ``lag_exact`` False."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget

#: brokerkit.backends.redis.stream.inspect_async.LAG_COUNT_LIMIT
LIMIT = 10_000


def _fill(client: redis.Redis, key: str, count: int) -> None:
    """``count`` entries with ids 1-0, 2-0, ... (another program's: a lone body)."""
    pipe = client.pipeline(transaction=False)
    for n in range(1, count + 1):
        pipe.xadd(key, {"body": b"x"}, id=f"{n}-0")
    pipe.execute()


def _groups(info: Any) -> dict[str, Any]:
    return {group.name: group for group in info.groups}


def test_a_lag_redis_does_not_give_is_counted_no_further_than_the_limit(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = redis_broker("redis+stream")
    key = broker.stream_key("t")
    _fill(redis_client, key, LIMIT + 50)
    redis_client.xgroup_create(key, "middle", id="10-0")
    redis_client.xgroup_create(key, "near", id=f"{LIMIT + 40}-0")
    redis_client.xgroup_create(key, "before", id="0")
    redis_client.xgroup_create(key, "done", id=f"{LIMIT + 50}-0")
    redis_client.xdel(key, f"{LIMIT + 45}-0")  # past these positions: Redis gives no lag
    unknown = {raw["name"] for raw in redis_client.xinfo_groups(key) if raw["lag"] is None}
    assert {b"middle", b"near", b"before"} <= unknown
    groups = _groups(broker.inspect("t"))
    assert (groups["middle"].lag, groups["middle"].lag_exact) == (LIMIT, False)
    assert (groups["near"].lag, groups["near"].lag_exact) == (9, True)
    assert (groups["before"].lag, groups["before"].lag_exact) == (LIMIT + 49, True)
    assert (groups["done"].lag, groups["done"].lag_exact) == (0, True)


def test_a_lag_redis_gives_is_exact(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = redis_broker("redis+stream")
    key = broker.stream_key("t")
    _fill(redis_client, key, 20)
    redis_client.xgroup_create(key, "g", id="0")
    group = _groups(broker.inspect("t"))["g"]
    assert (group.lag, group.lag_exact) == (20, True)


def test_asyncio_counts_no_further_than_the_limit(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> None:
    async def main() -> Any:
        url = redis_target.url("redis+stream")
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            key = broker.stream_key("t")
            _fill(redis_client, key, LIMIT + 10)
            redis_client.xgroup_create(key, "middle", id="5-0")
            redis_client.xdel(key, f"{LIMIT + 5}-0")
            return _groups(await broker.inspect("t"))["middle"]

    try:
        group = asyncio.run(main())
    finally:
        redis_client.delete(f"{prefix}:{{t}}")
    assert (group.lag, group.lag_exact) == (LIMIT, False)


@pytest.fixture(autouse=True)
def _no_leftovers(redis_client: redis.Redis, prefix: str) -> Any:
    yield
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)
