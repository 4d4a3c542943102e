"""redis+list: the rescue of a dead consumer lists its batches (its fetches hash) in
steps, no reply of more than a bounded number of fields however many it holds, and
every message comes back exactly once; under an ACL without ``+hscan`` (the line
docs/security.md gave before) it still rescues, listing with ``HKEYS`` (logged once).

Before, the listing was one ``HKEYS`` of the whole hash: 4,500 fields in one reply here,
2.9-3.3 ms of server time at 10,000 batches, 28 ms at 100,000 (issue 18: no
bookkeeping call above 5 ms). A hash of at most LIST_WHOLE (4,000) fields is still
listed in one ``HKEYS`` (short names, no values: well under 1 ms); the consumers here
hold more."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

import pytest

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker, rescue_reads
from brokerkit.backends.redis.list.upkeep_calls import RESCUE_LIMIT, rescue_once
from tests.redis_server import RedisServer
from tests.test_redis_acl import documented_acl

pytestmark = pytest.mark.redis_list

#: No listing reply may carry more fields than this (``HSCAN ... COUNT 1000`` at most).
MOST_FIELDS = 2000
#: More batches than one ``HKEYS`` lists.
BIG = getattr(rescue_reads, "LIST_WHOLE", 4000) + 100


def _hold(holder: RedisListBroker, held: dict[str, list[str]]) -> None:
    """Each consumer of ``held`` fetches its bodies one a batch (prefetch 1); then they
    die (no renewal, their heartbeats ended long ago)."""
    for consumer, bodies in held.items():
        holder.publish_many("t", bodies)
        subscription = holder.subscribe("t", prefetch=1, consumer=consumer)
        assert [subscription.receive(timeout=5).body for _ in bodies] == bodies  # type: ignore[union-attr]
    holder._suspend_renewals()
    holder._client.zadd(holder._topic("t").keys.consumers, dict.fromkeys(held, 0))


def _until_done(broker: RedisListBroker, most: int) -> int:
    """What rescue calls hand back until one reports nothing more to do (at most
    ``most``: a rescue that never finishes fails)."""
    plan = broker._topic("t")
    total = 0
    for _ in range(most):
        moved, _, _, visited, *_ = rescue_once(broker._client, broker._scripts["RESCUE"], plan, "")
        total += int(moved)
        if visited < RESCUE_LIMIT:
            return total
    raise AssertionError("the rescue never finished: it reports more to do at every call")


def _record_listings(client: Any) -> list[tuple[str, int]]:
    """(command, fields in its reply) of each HKEYS and HSCAN ``client`` sends from now
    on (through its response callbacks, which its pipelines share)."""
    seen: list[tuple[str, int]] = []
    for command in ("HKEYS", "HSCAN"):
        original = client.response_callbacks.get(command)

        def callback(response: Any, _c: str = command, _o: Any = original, **options: Any) -> Any:
            bare = bool(options.get("no_values"))
            seen.append((_c, len(response) if _c == "HKEYS" else len(response[1]) // (2 - bare)))
            return _o(response, **options) if _o is not None else response

        client.set_response_callback(command, callback)
    return seen


def _queued_bodies(broker: RedisListBroker) -> list[str]:
    subscription = broker.subscribe("t", prefetch=500)
    bodies = []
    while (delivery := subscription.receive(timeout=0)) is not None:
        bodies.append(delivery.body)
        broker.ack(delivery)
    return bodies


def test_no_listing_reply_grows_with_the_batches_held(redis_server: RedisServer) -> None:
    url = redis_server.url("redis+list")
    bodies = [f"m{i}" for i in range(BIG + 400)]
    with brokerkit.connect(url, visibility_timeout=600) as holder:
        assert isinstance(holder, RedisListBroker)
        _hold(holder, {"C": bodies})
        with brokerkit.connect(url, visibility_timeout=600) as rescuer:
            assert isinstance(rescuer, RedisListBroker)
            seen = _record_listings(rescuer._client)
            assert _until_done(rescuer, 3 * len(bodies) // 100) == len(bodies)
            assert seen, "the dead consumer's batches were never listed"
            assert max(fields for _, fields in seen) <= MOST_FIELDS, seen
            assert sorted(_queued_bodies(rescuer)) == sorted(bodies)  # each exactly once


@pytest.mark.parametrize("hscan", [True, False], ids=["documented", "without-hscan"])
def test_a_rescue_works_under_the_acl_with_or_without_hscan(
    redis_server: RedisServer, hscan: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Two dead consumers, each holding more batches than one ``HKEYS`` may list:
    all comes back under the documented ACL line, and under it less ``+hscan`` (an ACL
    made from the line before), the refusal logged once, at INFO, with the topic."""
    user, password = f"bk-acl-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    rules = [f">{password}" if r == ">CHANGE-ME" else r for r in documented_acl("list")]
    if not hscan:
        rules = [r for r in rules if r.lower() != "+hscan"]
    with contextlib.closing(redis_server.client()) as admin:
        admin.execute_command("ACL", "SETUSER", user, *rules)
    url = f"redis+list://{user}:{password}@127.0.0.1:{redis_server.port}/0"
    bodies = {c: [f"{c}-{i}" for i in range(BIG)] for c in ("C1", "C2")}
    with (
        brokerkit.connect(url, visibility_timeout=600) as holder,
        brokerkit.connect(url, visibility_timeout=600) as rescuer,
    ):
        assert isinstance(holder, RedisListBroker)
        assert isinstance(rescuer, RedisListBroker)
        _hold(holder, bodies)
        caplog.set_level(logging.INFO, logger="brokerkit.redis")
        assert _until_done(rescuer, 3 * 2 * BIG // 100) == 2 * BIG
        everything = [b for held in bodies.values() for b in held]
        assert sorted(_queued_bodies(rescuer)) == sorted(everything)
    refusals = [r for r in caplog.records if "refused HSCAN" in r.getMessage()]
    if hscan:
        assert not refusals
    else:
        assert len(refusals) == 1
        assert refusals[0].levelno == logging.INFO
        assert refusals[0].topic == "t"  # type: ignore[attr-defined]


def test_a_consumers_maintenance_lists_in_steps_on_its_connection(
    redis_server: RedisServer,
) -> None:
    """A live consumer's maintenance (on its fetches' connection, whose replies no
    callback reads) lists a dead consumer of BIG batches by ``HSCAN``, never one
    ``HKEYS`` of them all, and fetches every message once."""
    url = redis_server.url("redis+list")
    bodies = [f"m{i}" for i in range(BIG)]
    with (
        brokerkit.connect(url, visibility_timeout=600) as holder,
        brokerkit.connect(url, visibility_timeout=600) as other,
        contextlib.closing(redis_server.client()) as server,
    ):
        assert isinstance(holder, RedisListBroker)
        _hold(holder, {"C": bodies})
        fetches = holder._topic("t").keys.fetches("C").encode()
        server.config_set("slowlog-log-slower-than", 0)
        server.config_set("slowlog-max-len", 1_000_000)
        server.slowlog_reset()
        subscription = other.subscribe("t", prefetch=500, consumer="other")
        got = []
        while len(got) < len(bodies):
            delivery = subscription.receive(timeout=10)
            assert delivery is not None, f"{len(got)} of {len(bodies)} came back"
            got.append(delivery.body)
            other.ack(delivery)
        assert sorted(got) == sorted(bodies)
        listed = {
            entry["command"].split()[0].upper()
            for entry in server.slowlog_get(1_000_000)
            if not entry["client_address"].startswith(b"?")
            and entry["command"].split()[1:2] == [fetches]
        }
        assert b"HSCAN" in listed and b"HKEYS" not in listed, listed
