"""redis+stream: ``purge`` frees nodes unread only where the server's node settings
keep its bound (a node whose first entry is small holds a few KB of small entries).

Before, it assumed Redis's defaults: with ``stream-node-max-bytes 0`` (1 GB a node)
and ``stream-node-max-entries 18``, a node's first entry of 100 B was followed by 17
of 16 KB in the same node, and one call freed 2,176 of them unread (35 MB; with 1 MB
entries, about 660 MB in a call of 53 ms). Now a purge asks ``CONFIG GET`` and
``HELLO`` first and reads every entry unless ``stream-node-max-bytes`` is 1 to 4 KB on
Redis 6.2.6 or later, or when ``CONFIG`` is refused (the ACL in docs/security.md).
Counted, not timed: the entries each call's ``XRANGE``s returned (MONITOR)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.redis_server import RedisServer
from tests.stream_replay import Entry, purge_steps
from tests.test_redis_acl import documented_acl
from tests.test_stream_review35_purge_trims_unread import check_steps, read_in_step

#: A node's first entry of 100 B, then 17 of 16 KB: one node each run where the node
#: settings let it (max-bytes 0, max-entries 18).
RUNS = [(100, 1), (16 << 10, 17)] * 40


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def _purge(url: str, client: redis.Redis, sizes: list[int], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Purge a stream of entries of ``sizes``; the steps' commands, and the stream
    before each step and at the end."""
    topic = f"t{uuid.uuid4().hex[:8]}"
    with brokerkit.connect(url, prefix="brokerkit") as broker:
        assert isinstance(broker, RedisStreamBroker)
        key = broker.stream_key(topic)
        broker.create_group(topic, "g", start="latest")
        pipe = client.pipeline(transaction=False)
        for size in sizes:
            pipe.xadd(key, {"b": b"x" * (size - 1)})
        pipe.execute()
        with purge_steps(broker, client, key, monkeypatch, arguments=6) as (streams, calls):
            assert broker.purge(topic) == len(sizes)
        assert streams[-1] == []
        return calls.calls, streams


def _all_read(calls: list[list[tuple[str, ...]]], streams: list[list[Entry]]) -> None:
    for commands, before, after in zip(calls[1:], streams, streams[1:], strict=False):
        removed = {i for i, _ in before} - {i for i, _ in after}
        unread = removed - set(read_in_step(commands, before))
        assert not unread, f"a call freed {len(unread)} entries unread"


@pytest.mark.parametrize("settings", [(0, 18), (8 << 10, 18), (1 << 30, 100)])
def test_nodes_larger_than_the_default_are_read(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, settings: tuple[int, int]
) -> None:
    client = server.client()
    client.config_set("stream-node-max-bytes", settings[0])
    client.config_set("stream-node-max-entries", settings[1])
    calls, streams = _purge(
        server.url("redis+stream"), client, [s for s, n in RUNS for _ in range(n)], monkeypatch
    )
    check_steps(calls, streams)
    _all_read(calls, streams)


def test_a_probe_names_no_more_than_a_node_holds(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default node bytes, at most 18 entries a node: small nodes still go unread,
    and no probe's LIMIT goes past 18."""
    client = server.client()
    client.config_set("stream-node-max-entries", 18)
    calls, streams = _purge(server.url("redis+stream"), client, [100] * 3600, monkeypatch)
    check_steps(calls, streams)
    reads = sum(1 for call in calls for c in call if c[0] == "XRANGE")
    assert reads < 3600 // 4, f"{reads} entries read"
    limits = [int(c[6]) for call in calls for c in call if c[0] == "XTRIM"]
    assert limits and max(limits) <= 18


def _acl_url(server: RedisServer, add: tuple[str, ...] = ()) -> str:
    """A user made from docs/security.md's stream line (plus ``add``)."""
    user, password = f"bk-acl-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    rules = [f">{password}" if r == ">CHANGE-ME" else r for r in documented_acl("stream")]
    with contextlib.closing(server.client()) as client:
        client.execute_command("ACL", "SETUSER", user, *rules, *add)
    return f"redis+stream://{user}:{password}@127.0.0.1:{server.port}/0"


def test_config_refused_reads_every_entry(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented ACL grants no ``CONFIG``: the node settings are unknown, so every
    entry is read (even under the node settings that would allow trimming), and the
    purge goes on; with ``+config|get`` the nodes go unread."""
    client = server.client()
    client.config_set("stream-node-max-bytes", 0)
    sizes = [s for s, n in RUNS for _ in range(n)]
    calls, streams = _purge(_acl_url(server), client, sizes, monkeypatch)
    _all_read(calls, streams)
    client.config_set("stream-node-max-bytes", 4096)
    calls, streams = _purge(_acl_url(server), client, [100] * 2000, monkeypatch)
    _all_read(calls, streams)
    calls, streams = _purge(_acl_url(server, ("+config|get",)), client, [100] * 2000, monkeypatch)
    check_steps(calls, streams)
    assert sum(1 for call in calls for c in call if c[0] == "XRANGE") < 2000 // 4
