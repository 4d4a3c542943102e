"""redis+stream: with nothing held before them, ``purge`` drops the stream's head a
radix-tree node at a time, reading only each node's first entry, and still keeps its
promise (entries published meanwhile, and entries held meanwhile, stay).

Before, every entry was read, one an ``XRANGE``, 256 a call: with nothing held, a
million entries of 100 B took 3,836 script calls and 4.8 s of server time in all
(SLOWLOG; one ``XTRIM`` instead, 6 to 73 ms in one call). Counted, not timed: the
entries the calls read (``XRANGE``s seen through MONITOR) and the calls made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.backends.redis.stream.purge import (
    SMALL_ENTRY,
    STEP_BYTES,
    STEP_HEADS,
    STEP_UNREAD,
    WIDEST_NODE,
)
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor
from tests.stream_replay import Entry, entries

#: Entries of 100 B: Redis packs about 37 a node (stream-node-max-bytes, 4 KB).
SMALL = 20_000


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def _fill(client: redis.Redis, key: str, sizes: list[int]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for size in sizes:
        pipe.xadd(key, {"b": b"x" * (size - 1)})
    return [i.decode() for i in pipe.execute()]


def _reads(calls: list[list[tuple[str, ...]]]) -> int:
    return sum(1 for commands in calls for c in commands if c[0] == "XRANGE")


def test_a_purge_with_nothing_held_reads_one_entry_a_node(server: RedisServer) -> None:
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="p") as broker:
        key = broker.stream_key("t")
        subscription = broker.subscribe("t", group="g")
        _fill(client, key, [100] * SMALL)
        with ScriptMonitor(client, arguments=6) as calls:
            assert broker.purge("t") == SMALL
        assert client.xlen(key) == 0
        reads = _reads(calls.calls)
        assert reads < SMALL // 20, f"{reads} entries read to purge {SMALL} (before: all)"
        assert len(calls.calls) < SMALL // 2000, f"{len(calls.calls)} script calls"
        for commands in calls.calls:
            assert sum(c[0] == "XRANGE" for c in commands) <= STEP_HEADS
            for command in commands:
                if command[0] == "XTRIM":
                    assert command[5] == "LIMIT" and int(command[6]) <= WIDEST_NODE, command
        broker.publish("t", "after")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "after"
        delivery.ack()


def test_entries_published_and_held_meanwhile_stay(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the first call (the cut) and the steps: an entry is published, and a
    group made from the middle of the stream takes a delivery. The steps trim around
    neither; the held one can be acked, the published one is delivered."""
    client = server.client()
    url = server.url("redis+stream")
    with brokerkit.connect(url, prefix="p") as broker, brokerkit.connect(url, prefix="p") as other:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key("t")
        subscription = broker.subscribe("t", group="g")
        ids = _fill(client, key, [100] * SMALL)
        steps: Any = broker._scripts.purge_step
        late: list[Any] = []

        def step(*args: Any, **kwargs: Any) -> Any:
            if not late:
                other.publish("t", "between")
                other.create_group("t", "late", start=ids[SMALL // 2 - 1])
                late.append(other.subscribe("t", group="late", prefetch=1).receive(timeout=5))
            return steps(*args, **kwargs)

        monkeypatch.setattr(broker._scripts, "purge_step", step)
        with ScriptMonitor(client, arguments=6) as calls:
            removed = broker.purge("t")
        held = late[0]
        pending = client.xpending_range(key, "late", "-", "+", 10)
        assert held is not None and [p["message_id"].decode() for p in pending] == [ids[SMALL // 2]]
        assert removed == SMALL - 1
        left = [i.decode() for i, _ in client.xrange(key)]
        assert left[0] == ids[SMALL // 2] and len(left) == 2
        # those after the held one are read (and asked about); those before, trimmed
        assert _reads(calls.calls) < SMALL // 2 + SMALL // 20
        held.ack()
        between = subscription.receive(timeout=5)
        assert between is not None and between.body == "between"
        between.ack()


def _check_steps(calls: list[list[tuple[str, ...]]], streams: list[list[Entry]]) -> None:
    """Each step (calls[1:]; the stream before it in streams, after it the next) reads
    one entry an XRANGE, so of the big entries it removed, all but as many as it read
    went unread: fewer than 2 * STEP_UNREAD. And it reads no entry after one of
    STEP_BYTES or more."""
    assert len(calls) == len(streams)
    for commands, before, after in zip(calls[1:], streams, streams[1:], strict=False):
        reads = [c for c in commands if c[0] == "XRANGE"]
        assert all(c[-1] == "1" for c in reads), reads
        removed = {i for i, _ in before} - {i for i, _ in after}
        big = [size for i, size in before if i in removed and size >= SMALL_ENTRY]
        assert len(big) - len(reads) < 2 * STEP_UNREAD, f"{len(big)} big, {len(reads)} read"
        if big and min(big) >= STEP_BYTES:
            assert len(reads) <= 1 and len(removed) <= 1, "a step read on after 1 MB"


@pytest.mark.parametrize(
    "layout",
    [[(1 << 20, 12)], [(100, 150), (64 << 10, 40), (100, 1), (64 << 10, 40), (100, 150)]],
    ids=["1MB", "mixed"],
)
def test_big_entries_are_removed_as_read(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, layout: list[tuple[int, int]]
) -> None:
    """Entries of 1 MB (a node each) are removed only as read; after small ones, a
    probe frees fewer than STEP_UNREAD of them unread past its node."""
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="p") as broker:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key("t")
        broker.create_group("t", "g", start="latest")
        ids = _fill(client, key, [size for size, count in layout for _ in range(count)])
        steps: Any = broker._scripts.purge_step
        streams: list[list[Entry]] = []

        def step(*args: Any, **kwargs: Any) -> Any:
            streams.append(entries(client, key))
            return steps(*args, **kwargs)

        monkeypatch.setattr(broker._scripts, "purge_step", step)
        with ScriptMonitor(client, arguments=6) as calls:
            assert broker.purge("t") == len(ids)
        streams.append(entries(client, key))
        _check_steps(calls.calls, streams)
        assert streams[-1] == []
