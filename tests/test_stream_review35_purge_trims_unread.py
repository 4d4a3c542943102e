"""redis+stream: with nothing held before them, ``purge`` drops the stream's head a
radix-tree node at a time, reading only each node's first entry, and still keeps its
promise (entries published meanwhile, and entries held meanwhile, stay).

Before, every entry was read, one an ``XRANGE``, 256 a call: with nothing held, a
million entries of 100 B took 3,836 script calls and 4.8 s of server time in all
(SLOWLOG; one ``XTRIM`` instead, 6 to 73 ms in one call). Counted, not timed: the
entries the calls read (``XRANGE``s seen through MONITOR) and the calls made."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.backends.redis.stream.purge import (
    NODE_BYTES,
    SMALL_ENTRY,
    STEP_BYTES,
    STEP_HEADS,
    STEP_UNREAD,
    WIDEST_NODE,
)
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor
from tests.stream_replay import Entry, entry_id, purge_steps, replayed

EntryId = tuple[int, int]

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


def read_in_step(commands: list[tuple[str, ...]], before: list[Entry]) -> list[EntryId]:
    """The entries a step's ``XRANGE``s returned, in order (``before``: the stream
    before the step), but for the heads it probed.

    A read from an id (``(<id>``) is replayed on ``before`` (the step trims only below
    its reads' starts). A read of the head (``-``, the stream as trimmed so far) is
    known by what follows it: a read on from ``(<id>`` names it; an ``XTRIM MINID``
    below another id (the step ends, removing what it read) names the one under it;
    a probe (``XTRIM MINID`` the read's end) says it was small, and it is left out
    (so is a big one the step ends on whose next id is that end: stricter)."""
    read: list[EntryId] = []
    for n, command in enumerate(commands):
        if command[0] != "XRANGE":
            continue
        if command[2] != "-":
            read += [i for i, _ in replayed(before, command)]
            continue
        after = commands[n + 1] if n + 1 < len(commands) else None
        if after is None:  # nothing left to read
            continue
        if after[0] == "XRANGE" and after[2].startswith("("):
            read.append(entry_id(after[2][1:]))
        elif after[0] == "XTRIM" and after[4] != command[3][1:]:
            read.append(max(i for i, _ in before if i < entry_id(after[4])))
    return read


def check_step(commands: list[tuple[str, ...]], before: list[Entry], after: list[Entry]) -> None:
    """A step (its commands; the stream before and after it) frees fewer than
    2 * STEP_UNREAD big entries (SMALL_ENTRY or more) it did not read, and of small
    ones unread no more than a node (under NODE_BYTES: stream-node-max-bytes) for each
    head it probed, besides those."""
    read = set(read_in_step(commands, before))
    removed = {i for i, _ in before} - {i for i, _ in after}
    unread = [(i, size) for i, size in before if i in removed - read]
    big = [size for _, size in unread if size >= SMALL_ENTRY]
    assert len(big) < 2 * STEP_UNREAD, f"{len(big)} big entries freed unread in a call"
    probed = sum(
        1
        for c, d in itertools.pairwise(commands)
        if c[0] == "XRANGE" and c[2] == "-" and d[0] == "XTRIM" and d[4] == c[3][1:]
    )
    small = sum(size for _, size in unread if size < SMALL_ENTRY)
    assert small <= (probed + 2 * STEP_UNREAD) * NODE_BYTES, f"{small} B freed unread"


def check_steps(calls: list[list[tuple[str, ...]]], streams: list[list[Entry]]) -> None:
    """Each step (calls[1:]; the stream before it in streams, after it the next) keeps
    :func:`check_step`'s bound, reads one entry an XRANGE, and none after one of
    STEP_BYTES or more."""
    assert len(calls) == len(streams)
    for commands, before, after in zip(calls[1:], streams, streams[1:], strict=False):
        assert all(c[-1] == "1" for c in commands if c[0] == "XRANGE"), commands
        check_step(commands, before, after)
        removed = {i for i, _ in before} - {i for i, _ in after}
        sizes = [size for i, size in before if i in removed]
        if sizes and min(sizes) >= STEP_BYTES:
            read = read_in_step(commands, before)
            assert len(read) <= 1 and len(removed) <= 1, "a step read on after 1 MB"


#: 1 MB entries alone; runs of 100 B between runs of 64 KB; a node of 65 tiny entries
#: before big ones (k doubling from 64 to 100, stream-node-max-entries, would free 35
#: of them unread: k goes no more than STEP_UNREAD past the least the node may hold);
#: nodes of 60 tiny and of 20 small entries, each followed by big ones (each pair's
#: probes free 15 big ones unread: a call stops once its probes may have freed
#: STEP_UNREAD past their nodes).
LAYOUTS = {
    "1MB": [(1 << 20, 12)],
    "mixed": [(100, 150), (64 << 10, 40), (100, 1), (64 << 10, 40), (100, 150)],
    "65-60": [(10, 65), (64 << 10, 60)],
    "60-20-14": [(10, 60), (64 << 10, 1), (100, 20), (64 << 10, 14)] * 10,
}


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
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
        with purge_steps(broker, client, key, monkeypatch, arguments=6) as (streams, calls):
            assert broker.purge("t") == len(ids)
        check_steps(calls.calls, streams)
        assert streams[-1] == []
