"""redis+stream: ``purge`` runs in bounded script calls, however long the stream is and
however many entries are held, and keeps its promise across them.

Before, one PURGE call did everything: with an entry held, it read every group's whole
pending list and the whole stream, 500 entries at a time, and XDELed each unheld one
(5,000 entries left after a consumer held some: 24 ms of server time in one call; a
million entries, seconds, every other client waiting); with nothing held, one XTRIM
MAXLEN 0 (a million entries of 100 B: 6 ms; 100,000 of 10 KB: 72 ms). Counted commands
(MONITOR), not durations: no script call reads, asks about or deletes more than
:data:`BOUND` entries, and none trims without a LIMIT."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor

#: The entries one purge call may read, ask the groups about or delete at most.
BOUND = 256
#: Three calls' worth of entries, and some.
ENTRIES = 3 * BOUND + 40


def _count(args: tuple[str, ...]) -> int:
    return int(args[args.index("COUNT") + 1]) if "COUNT" in args else int(args[-1])


def _check_bounded(calls: list[list[tuple[str, ...]]]) -> None:
    """No call reads more than BOUND entries (XRANGE COUNTs summed), asks a group about
    more (XPENDING's count), deletes more (XDEL's ids), or trims without a LIMIT."""
    assert len(calls) > 3, f"one call did the whole purge: {len(calls)} script calls"
    for commands in calls:
        read = sum(_count(c) for c in commands if c[0] in ("XRANGE", "XREVRANGE"))
        assert read <= BOUND, f"a call read {read} entries: {commands[:3]}..."
        for command in commands:
            if command[0] == "XPENDING":
                assert _count(command) <= BOUND, command
            elif command[0] == "XDEL":
                assert len(command) - 2 <= BOUND, f"a call deleted {len(command) - 2}"
            elif command[0] == "XTRIM":
                assert "LIMIT" in command and int(command[-1]) <= BOUND, command


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def _fill(client: redis.Redis, key: str, count: int) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(key, {"body": b"x" * 100 + str(i).encode()})
    return [i.decode() for i in pipe.execute()]


def test_a_purge_with_entries_held_runs_bounded_calls_and_keeps_its_promise(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One delivery held by its consumer, one delayed retry pending under the parking
    consumer, entries published before them and after; a delayed publish. The purge
    removes every other entry at or below the cut and the delayed publish (the count
    says so), in bounded calls; an entry published between two of its calls stays and
    is delivered; the held delivery can be acked, the retry comes back and can be
    nacked (and comes back once more)."""
    client = server.client()
    url = server.url("redis+stream")
    with brokerkit.connect(url, prefix="p") as broker, brokerkit.connect(url, prefix="p") as other:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key("t")
        subscription = broker.subscribe("t", group="g", prefetch=1)
        _fill(client, key, 2 * BOUND)
        held, retried = subscription.receive(timeout=5), subscription.receive(timeout=5)
        assert held is not None and retried is not None
        retried.nack(delay=1.0)  # pending under brokerkit:delayed, due in a second
        _fill(client, key, BOUND + 40)
        broker.publish("t", "later", delay=60)

        steps: Any = getattr(broker._scripts, "purge_step", None)
        published: list[str] = []

        def step(*args: Any, **kwargs: Any) -> Any:
            if not published:  # between the first call and the next
                other.publish("t", "between")
                published.append("between")
            return steps(*args, **kwargs)

        monkeypatch.setattr(broker._scripts, "purge_step", step, raising=False)  # (before: none)
        with ScriptMonitor(client) as calls:
            removed = broker.purge("t")
        _check_bounded(calls.calls)

        stored = 2 * BOUND + BOUND + 40
        assert removed == stored - 2 + 1, "every unheld entry and the delayed publish"
        assert broker.inspect("t").scheduled == 1, "the delayed retry, not the publish"
        assert client.xlen(key) == 3, "the two held and the one published between"
        held.ack()
        between = subscription.receive(timeout=5)
        assert between is not None and between.body == "between"
        between.ack()
        again = subscription.receive(timeout=5)  # the delayed retry, due
        assert again is not None and again.id == retried.id
        again.nack()
        once_more = subscription.receive(timeout=5)
        assert once_more is not None and once_more.id == retried.id
        once_more.ack()
        assert subscription.receive(timeout=0.2) is None
        assert broker.inspect("t").groups[0].pending == 0


def test_a_purge_with_nothing_held_trims_in_bounded_calls(server: RedisServer) -> None:
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="p") as broker:
        key = broker.stream_key("t")
        subscription = broker.subscribe("t", group="g")
        _fill(client, key, 4 * ENTRIES)
        with ScriptMonitor(client) as calls:
            assert broker.purge("t") == 4 * ENTRIES
        _check_bounded(calls.calls)
        assert client.xlen(key) == 0
        broker.publish("t", "after")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "after"
        delivery.ack()


def test_the_asyncio_broker_purges_in_bounded_calls(server: RedisServer) -> None:
    client = server.client()

    async def main() -> None:
        async with await brokerkit.aio.connect(server.url("redis+stream"), prefix="p") as broker:
            key = broker.stream_key("t")  # type: ignore[attr-defined]
            subscription = await broker.subscribe("t", group="g")
            _fill(client, key, ENTRIES)
            held = await subscription.receive(timeout=5)
            assert held is not None
            with ScriptMonitor(client) as calls:
                assert await broker.purge("t") == ENTRIES - 1
            _check_bounded(calls.calls)
            await held.ack()
            assert client.xlen(key) == 1

    asyncio.run(main())


def test_a_stream_deleted_between_two_calls_ends_the_purge(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the calls before removed is counted; nothing fails, and nothing is made."""
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="p") as broker:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key("t")
        subscription = broker.subscribe("t", group="g")
        _fill(client, key, ENTRIES)
        held = subscription.receive(timeout=5)  # the first entry: nothing to trim
        assert held is not None
        steps: Callable[..., Any] = getattr(broker._scripts, "purge_step", None)
        seen: list[Any] = []

        def step(*args: Any, **kwargs: Any) -> Any:
            if len(seen) == 2:  # after a step that trimmed nothing, and one that deleted
                client.delete(key)
            seen.append(steps(*args, **kwargs))
            return seen[-1]

        monkeypatch.setattr(broker._scripts, "purge_step", step, raising=False)  # (before: none)
        removed = broker.purge("t")
        assert len(seen) == 3, "a step after the stream was deleted, and no more"
        assert removed == int(seen[1][0]) > 0
        assert client.exists(key) == 0


def test_entries_held_by_two_groups_deep_in_the_stream_are_all_that_stays(
    server: RedisServer,
) -> None:
    """Held in the middle (group a) and near the end (group b): the entries before
    the first are trimmed, the rest read and deleted around both, in bounded calls."""
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="p") as broker:
        key = broker.stream_key("t")
        ids = _fill(client, key, 4 * ENTRIES)
        kept = [ids[2 * BOUND + 10], ids[-3]]
        broker.create_group("t", "a", start=ids[2 * BOUND + 9])
        broker.create_group("t", "b", start=ids[-4])
        held = []
        for group in ("a", "b"):
            subscription = broker.subscribe("t", group=group, prefetch=1)
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            held.append(delivery)
        with ScriptMonitor(client) as calls:
            assert broker.purge("t") == 4 * ENTRIES - 2
        _check_bounded(calls.calls)
        assert any(c[0] == "XTRIM" for commands in calls.calls for c in commands)
        assert [i.decode() for i, _ in client.xrange(key)] == kept
        for delivery in held:
            delivery.ack()
