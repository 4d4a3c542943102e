"""redis+stream: each purge call's work is bounded whatever the mix of entry sizes.

Before, both bounds were guessed from entries already seen: a trimming call set its
XTRIM LIMIT from the first entry's size alone (one of 100 B before entries of 1 MB:
256 entries, a quarter of a GB, freed in one call), and a reading call read up to 16
entries an XRANGE by their running average (one of 100 B, then 16 of 1 MB copied into
the script at once: 29 ms). Counted, not timed: the entries each call's XRANGEs
returned (MONITOR's ranges against the stream as it was before the call) come to at
most STEP_BYTES of fields besides the last one read, and every entry a call removed
is one it read, so a call frees no more than it copied; except (review35) that with
nothing held before them a call frees nodes of small entries unread, and fewer than
2 * STEP_UNREAD big entries past them (tests/test_stream_review35_purge_trims_unread.py:
check_step), which a call that reads after an entry held does not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.backends.redis.stream.purge import STEP_BYTES, STEP_ENTRIES
from tests.redis_server import RedisServer
from tests.stream_replay import Entry, entry_id, purge_steps
from tests.test_stream_review35_purge_trims_unread import check_step, read_in_step

SMALL, BIG = 100, 64 << 10
#: Small entries (a node of 100 holds them), big ones (a node each), small again.
LAYOUT = [(SMALL, 150), (BIG, 20), (SMALL, 1), (BIG, 20), (SMALL, 150)]
#: The entry held: none, the first, or the small one between the big ones.
HELD = {"none": None, "first": 0, "middle": 170}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def _check_calls(
    calls: list[list[tuple[str, ...]]], streams: list[list[Entry]], strict: bool
) -> None:
    """Each step (calls[1:], the stream before it in streams, after it the next); with
    ``strict`` (a held entry first), it removes only entries it read."""
    assert len(calls) == len(streams), (len(calls), len(streams))
    for commands, before, after in zip(calls[1:], streams, streams[1:], strict=False):
        assert all(c[0] != "XREVRANGE" for c in commands)
        assert all(len(c) == 6 for c in commands if c[0] == "XRANGE"), commands
        size = dict(before)
        read = [(i, size[i]) for i in read_in_step(commands, before)]
        copied = sum(s for _, s in read)
        assert len(read) <= STEP_ENTRIES
        assert not read or copied - read[-1][1] < STEP_BYTES, (
            f"a call copied {copied} bytes of fields ({len(read)} entries) into the script"
        )
        check_step(commands, before, after)
        removed = {i for i, _ in before} - {i for i, _ in after}
        unread = removed - {i for i, _ in read}
        freed = sum(s for i, s in before if i in unread)
        assert not (strict and unread), f"a call removed {len(unread)} unread ({freed} B)"


@pytest.mark.parametrize("held", list(HELD))
def test_no_purge_call_copies_or_frees_more_than_its_bound(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="p") as broker:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key("t")
        pipe = client.pipeline(transaction=False)
        for size, count in LAYOUT:
            for _ in range(count):
                pipe.xadd(key, {"b": b"x" * (size - 1)})
        ids: list[str] = [i.decode() for i in pipe.execute()]
        position = HELD[held]
        delivery = None
        if position is not None:
            start = "earliest" if position == 0 else ids[position - 1]
            broker.create_group("t", "g", start=start)
            delivery = broker.subscribe("t", group="g", prefetch=1).receive(timeout=5)
            assert delivery is not None
            pending = client.xpending_range(key, "g", "-", "+", 10)
            assert [p["message_id"].decode() for p in pending] == [ids[position]]

        with purge_steps(broker, client, key, monkeypatch) as (streams, calls):
            removed = broker.purge("t")
        _check_calls(calls.calls, streams, strict=position == 0)
        assert removed == len(ids) - (position is not None)
        assert [i for i, _ in streams[-1]] == (
            [] if position is None else [entry_id(ids[position])]
        )
        if delivery is not None:
            delivery.ack()


def test_a_trimming_call_trims_up_to_the_id_just_above_the_last_it_read(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its threshold is that id, worked out as text (a carry; the last sequence number,
    where the next id is the next millisecond's first): the entries read, four of 64 KB a
    call, and none after them."""
    client = server.client()
    with brokerkit.connect(server.url("redis+stream"), prefix="p") as broker:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key("t")
        broker.create_group("t", "g", start="latest")
        ids = ["1-9", "1-99", "1-199", "1-999", "2-0", "3-0", "4-0", f"5-{2**64 - 1}", "6-0", "9-9"]
        for i in ids:
            client.xadd(key, {"b": b"x" * (BIG - 1)}, id=i)
        client.xadd(key, {"b": b"x"}, id="10-0")
        with purge_steps(broker, client, key, monkeypatch) as (streams, calls):
            assert broker.purge("t") == len(ids) + 1
        _check_calls(calls.calls, streams, strict=False)
        trims = [c for c in calls.commands if c[0] == "XTRIM"]
        assert [c[4] for c in trims] == ["1-1000", "6-0", "9-10"]
        assert client.xlen(key) == 0
