"""inspect's ``dead_lettered`` counts the dead letters still waiting to be dealt with,
on backends that keep settled messages (memory, redis+stream, NATS JetStream): once
``brokerkit dlq --all`` moved them back (read and acked through its group
``brokerkit-dlq``), the count, ``brokerkit topics`` and the exporter's
``brokerkit_topic_dead_letters`` drop to 0; an alert on dead letters > 0 clears."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("typer")

import brokerkit
from brokerkit.cli._dlq import move_dead_letters
from tests.conftest import RedisTarget
from tests.nats_server import nats, nats_prefix, nats_url  # noqa: F401 (fixtures)

DEAD = 3


@pytest.fixture(params=["memory", "redis+stream", "nats"])
def make(
    request: pytest.FixtureRequest, redis_target: RedisTarget
) -> Iterator[Callable[[int | None], brokerkit.Broker]]:
    """``make(max_deliveries)``: a broker of the backend; every one shares the topics."""
    made: list[brokerkit.Broker] = []
    prefix = f"dl29-{uuid.uuid4().hex[:10]}"

    def broker(max_deliveries: int | None) -> brokerkit.Broker:
        if request.param == "memory":
            made.append(brokerkit.connect(f"memory://{prefix}", max_deliveries=max_deliveries))
        elif request.param == "redis+stream":
            url = redis_target.url("redis+stream", prefix=prefix)
            made.append(brokerkit.connect(url, max_deliveries=max_deliveries))
        else:
            made.append(request.getfixturevalue("nats")(max_deliveries=max_deliveries))
        return made[-1]

    yield broker
    for b in made:
        b.close()
    if request.param == "redis+stream":
        client = redis_target.client()
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def dead_letter(broker: brokerkit.Broker, topic: str, count: int) -> None:
    """Publish ``count`` messages to ``topic`` and dead-letter them all (a broker with
    max_deliveries=1: a nack dead-letters)."""
    with broker.subscribe(topic, group="workers") as subscription:
        broker.publish_many(topic, range(count))
        for _ in range(count):
            delivery = subscription.receive(10)
            assert delivery is not None
            delivery.nack(requeue=False)


def test_dlq_all_clears_the_dead_letter_count(
    make: Callable[[int | None], brokerkit.Broker],
) -> None:
    # the dlq command's broker: max_deliveries=None, handing back never dead-letters
    broker = make(None)
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    dead_letter(make(1), topic, DEAD)
    assert broker.inspect(topic).dead_lettered == DEAD
    moved = move_dead_letters(broker, topic, every=True)
    assert [m.moved_to for m in moved] == [topic] * DEAD
    info = broker.inspect(topic)
    assert info.dead_lettered == 0, f"every dead letter was moved back, inspect says {info!r}"


def test_listing_or_moving_some_leaves_the_others_counted(
    make: Callable[[int | None], brokerkit.Broker],
) -> None:
    # the dlq command's broker: max_deliveries=None, handing back never dead-letters
    broker = make(None)
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    dead_letter(make(1), topic, DEAD)
    listed = move_dead_letters(broker, topic)  # listing hands every one back
    assert len(listed) == DEAD
    assert broker.inspect(topic).dead_lettered == DEAD
    moved = move_dead_letters(broker, topic, ids=[listed[0].id])
    assert [m.moved_to for m in moved if m.moved_to] == [topic]
    assert broker.inspect(topic).dead_lettered == DEAD - 1


def test_a_group_tailing_new_dead_letters_does_not_clear_the_count(
    make: Callable[[int | None], brokerkit.Broker],
) -> None:
    # Only the groups that deal with dead letters (the default one, brokerkit-dlq)
    # count: a group that only reads new ones had settled all there were, and zeroed
    # the count though nothing was dealt with.
    broker = make(None)
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    dead_letter(make(1), topic, DEAD)
    assert broker.inspect(topic).dead_lettered == DEAD
    with broker.subscribe(broker.dead_letter_topic(topic), group="alert-tail", start="latest"):
        info = broker.inspect(topic)
        assert info.dead_lettered == DEAD, f"a tail from 'latest' dealt with nothing: {info!r}"


def test_the_dead_letter_groups_are_the_default_and_the_dlq_commands() -> None:
    from brokerkit._inspect import DEAD_LETTER_GROUPS, DLQ_GROUP

    assert DEAD_LETTER_GROUPS == (brokerkit.DEFAULT_GROUP, DLQ_GROUP)


def test_redis_stream_dead_letter_count_never_scans_the_whole_stream() -> None:
    # Where XINFO GROUPS gives no lag (Redis 6.2; 7.x after an XDEL past the group's
    # position), each dead-letter group was counted by a script that paged the whole
    # stream (300k dead letters: ~1 s of Redis blocked per inspect). Now the count is
    # its upper bound, the stored ones, and no entry is read.
    from tests.redis_server import RedisServer

    total = 2500
    with RedisServer() as server:
        broker = brokerkit.connect(server.url("redis+stream"), prefix="dl29scan")
        client = server.client()
        try:
            topic = "orders"
            dlq = broker.dead_letter_topic(topic)
            broker.publish_many(dlq, range(total))
            plain = broker.subscribe(dlq)
            dlq_command = broker.subscribe(dlq, group="brokerkit-dlq", start="earliest")
            tail = broker.subscribe(dlq, group="alert-tail", start="earliest")
            key = str(broker.inspect(topic).details["dead_letter_key"])
            newest: Any = client.xrevrange(key, count=1)
            client.xdel(key, newest[0][0])
            groups = client.xinfo_groups(key)
            assert {g["name"] for g in groups} == {b"default", b"brokerkit-dlq", b"alert-tail"}
            assert all(g.get("lag") is None for g in groups), groups
            client.config_resetstat()
            info = broker.inspect(topic)
            stats = client.info("commandstats")
            reads = [
                stats.get(f"cmdstat_{c}", {"calls": 0})["calls"]
                for c in ("xrange", "evalsha", "eval")
            ]
            assert info.dead_lettered == total - 1  # the upper bound: every stored one
            assert reads == [0, 0, 0], reads  # no entry read, no script run

            for subscription in (plain, dlq_command, tail):
                subscription.close()
        finally:
            broker.close()
            client.close()
