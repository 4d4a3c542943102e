"""redis+list: listing a hash of a topic's deliveries outside any script (a dead
consumer's fetches hash in a rescue, the ``expiry`` hash in ``inspect()``) reads a
bounded amount a command, however many batches and however many deliveries a batch.

Before (d4961f7): a step was ``HSCAN ... COUNT 1000``, values included, and a fetches
hash's value is one flag a delivery of the batch: 1,001 batches of 10,000 deliveries
took one step 13.5-17.2 ms of server time (SLOWLOG, private Redis 7.0); the scan had no
bound on its steps; ``inspect()`` listed ``expiry`` in one ``HKEYS`` (one field a batch
held: 28 ms at 100,000); and two threads dropping the same oldest kept listing made one
rescue raise KeyError. Counted reply sizes and commands here, not durations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.list import (
    AsyncRedisListBroker,
    RedisListBroker,
    rescue_reads,
    rescue_reads_async,
)
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LIMIT, rescue_once
from tests.redis_cluster import RedisClusterSet
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis_list

#: The listing helper (``_listed`` before it was shared with inspect).
LISTED: Callable[..., list[str]] = getattr(rescue_reads, "listed", None) or rescue_reads._listed
#: No listing reply may carry more fields than this, nor more value bytes than that.
MOST_FIELDS = 2000
MOST_VALUE_BYTES = 2 * getattr(rescue_reads, "LIST_BYTES", 128 * 1024)
#: More fields than one HKEYS may list (4,000 now, 1,000 before).
BIG = getattr(rescue_reads, "LIST_WHOLE", 4000) + 500


def _record(client: Any) -> list[tuple[str, int, int]]:
    """(command, fields, value bytes) of each HKEYS and HSCAN reply ``client`` reads
    from now on (through its response callbacks, which its pipelines share; a sync
    cluster client's own, run on what its node's callback made of the reply)."""
    seen: list[tuple[str, int, int]] = []
    for command in ("HKEYS", "HSCAN"):
        callbacks = getattr(client, "cluster_response_callbacks", None)
        original = (client.response_callbacks if callbacks is None else callbacks).get(command)

        def callback(response: Any, _c: str = command, _o: Any = original, **options: Any) -> Any:
            if _c == "HKEYS":
                seen.append((_c, len(response), 0))
            elif isinstance(response[1], dict):
                values = list(response[1].values())
                seen.append((_c, len(values), sum(map(len, values))))
            elif options.get("no_values"):
                seen.append((_c, len(response[1]), 0))
            else:
                values = response[1][1::2]
                seen.append((_c, len(values), sum(map(len, values))))
            return _o(response, **options) if _o is not None else response

        client.set_response_callback(command, callback)
    return seen


def _bounded(seen: list[tuple[str, int, int]]) -> None:
    assert seen, "nothing was listed"
    assert max(fields for _, fields, _ in seen) <= MOST_FIELDS, seen
    assert max(size for _, _, size in seen) <= MOST_VALUE_BYTES, seen


def _fill(client: redis.Redis, key: str, fields: int, value: bytes) -> list[str]:
    names = [f"{i:016x}" for i in range(fields)]
    for i in range(0, fields, 500):
        client.hset(key, mapping=dict.fromkeys(names[i : i + 500], value))
    return names


@pytest.mark.parametrize("flags", [1, 3000], ids=["one-delivery", "3000-deliveries"])
def test_no_listing_step_reads_more_than_a_bounded_size(
    redis_server: RedisServer, flags: int
) -> None:
    """A fetches hash of more batches than one HKEYS may list, each of ``flags``
    deliveries: every field listed once, no reply over MOST_FIELDS fields or
    MOST_VALUE_BYTES of values (before: 1,000 values of 3,000 flags, 3 MB, a step)."""
    with contextlib.closing(redis_server.client()) as client:
        key = "brokerkit:{t}:fetches:C"
        names = _fill(client, key, BIG, b"0" * flags)
        seen = _record(client)
        listed = LISTED(client, None, key, "t")
        assert sorted(listed) == names
        assert {command for command, _, _ in seen} == {"HSCAN"}
        _bounded(seen)


def test_a_scan_of_a_hash_growing_under_it_stops(redis_server: RedisServer) -> None:
    """A hash that grows faster than the scan visits it (5,000 fields written after
    each step, up to 400 steps): the listing stops after 16 steps past four times the
    fields it held asked for (1,000 a step of short values), with what it found
    (before: 69 steps of COUNT 1000 here, as many as the writes went on for)."""
    with (
        contextlib.closing(redis_server.client()) as client,
        contextlib.closing(redis_server.client()) as writer,
    ):
        key = "brokerkit:{t}:fetches:C"
        _fill(client, key, BIG, b"0")
        steps = []
        original = client.response_callbacks["HSCAN"]

        def grow(response: Any, **options: Any) -> Any:
            steps.append(len(steps))
            if len(steps) < 400:
                start = BIG + 5000 * len(steps)
                writer.hset(key, mapping={f"{i:016x}": b"0" for i in range(start, start + 5000)})
            return original(response, **options)

        client.set_response_callback("HSCAN", grow)
        listed = LISTED(client, None, key, "t")
        assert len(listed) == len(set(listed))
        assert len(steps) <= 16 + 4 * BIG // 1000 + 2, f"{len(steps)} HSCAN steps"


def _batches(broker: RedisListBroker, consumer: str, batches: int, each: int) -> list[str]:
    """``batches`` fetches of ``each`` messages by ``consumer`` (the FETCH script,
    as a subscription runs it): its fetches hash holds one field a batch, its value a
    flag a delivery."""
    plan = broker._topic("t")
    bodies = [f"{consumer}-{i}" for i in range(batches * each)]
    for i in range(0, len(bodies), 5000):
        broker.publish_many("t", bodies[i : i + 5000])
    fetch = broker._scripts["FETCH"]
    for n in range(batches):
        nonce = f"{n:012x}-"
        keys = [*plan.keys_for([consumer]), plan.keys.batch(nonce, consumer)]
        assert fetch(keys=keys, args=[*plan.common, consumer, each, 600_000, nonce, 0])[0] == each
    return bodies


def test_inspect_lists_the_expiry_hash_in_bounded_steps(redis_server: RedisServer) -> None:
    """inspect() of a topic of more batches held than one HKEYS may list: no listing
    reply over MOST_FIELDS (before: one HKEYS of them all), the counts exact."""
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=600) as broker:
        assert isinstance(broker, RedisListBroker)
        _batches(broker, "live", BIG, 1)
        broker._client.zadd(broker._topic("t").keys.consumers, {"live": 2**50})
        seen = _record(broker._client)
        info = broker.inspect("t")
        assert info.in_flight == BIG
        _bounded(seen)


class _RacingDict(dict[Any, Any]):
    """A dict whose oldest key another thread drops right after it is looked up (as a
    sync broker's maintenance and a caller's rescue may, at once)."""

    def __iter__(self) -> Any:
        oldest = next(super().__iter__())
        super().pop(oldest, None)
        yield oldest


def test_a_kept_listing_dropped_meanwhile_is_no_error(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight listings kept (the most) and the oldest dropped by another thread
    between its lookup and its removal: the rescue goes on (before: KeyError out of
    rescue_once), and hands back everything."""
    kept = _RacingDict({(0, f"other{i}"): ["x"] for i in range(rescue_reads._LISTED_MOST)})
    monkeypatch.setattr(rescue_reads, "_LISTED", kept)
    with brokerkit.connect(redis_server.url("redis+list"), visibility_timeout=600) as broker:
        assert isinstance(broker, RedisListBroker)
        bodies = _batches(broker, "C", 300, 1)
        broker._client.zadd(broker._topic("t").keys.consumers, {"C": 0})
        plan = broker._topic("t")
        moved = 0
        for _ in range(10):
            reply = rescue_once(broker._client, broker._scripts["RESCUE"], plan, "")
            moved += int(reply[0])
            if reply[3] < RESCUE_LIMIT:
                break
        assert moved == len(bodies)


def test_an_asyncio_rescue_and_inspect_list_in_bounded_steps(redis_server: RedisServer) -> None:
    """The asyncio broker: inspect() and rescue() of a dead consumer of more batches
    than one HKEYS may list, each of 2 deliveries, list in bounded steps; every
    message comes back once."""
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        bodies = _batches(holder, "C", BIG, 2)
        holder._client.zadd(holder._topic("t").keys.consumers, {"C": 0})

    async def main() -> list[str]:
        broker = await brokerkit.aio.connect(url, visibility_timeout=600)
        try:
            assert isinstance(broker, AsyncRedisListBroker)
            seen = _record(broker._client)
            info = await broker.inspect("t")
            assert info.in_flight == len(bodies)
            _bounded(seen)
            del seen[:]
            assert await broker.rescue("t") == len(bodies)
            _bounded(seen)
            assert {command for command, _, _ in seen} == {"HSCAN"}
            subscription = await broker.subscribe("t", prefetch=1000, consumer="after")
            got = []
            while (delivery := await subscription.receive(timeout=0)) is not None:
                got.append(delivery.body)
                await broker.ack(delivery)
            return got
        finally:
            await broker.close()

    got = asyncio.run(asyncio.wait_for(main(), 120))
    assert sorted(got) == sorted(bodies)


def test_a_cluster_client_lists_in_bounded_steps(
    redis_cluster: RedisClusterSet, prefix: str
) -> None:
    """On a cluster (its client's own ``execute_command`` and callbacks, sync and
    asyncio): every field once, each reply bounded."""
    key = f"{prefix}:{{t}}:fetches:C"
    client = redis_cluster.client()
    try:
        names = _fill(client, key, BIG, b"0" * 1000)  # type: ignore[arg-type]
        seen = _record(client)
        assert sorted(LISTED(client, None, key, "t")) == names
        _bounded(seen)
    finally:
        client.close()

    async def main() -> list[str]:
        aclient = aioredis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
        try:
            seen = _record(aclient)
            listed = await rescue_reads_async.listed(aclient, None, key, "t")
            _bounded(seen)
            return listed
        finally:
            await aclient.aclose()
            with contextlib.closing(redis_cluster.client()) as cleanup:
                cleanup.delete(key)

    assert sorted(asyncio.run(asyncio.wait_for(main(), 60))) == names
