"""redis+stream under hostile conditions, against a real redis-server: a command the
ACL denies inside a script, corrupt bookkeeping keys, and an idle consumer that
must still look for expired leases."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.exceptions import BrokerError, PermissionDenied
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import PROMPT, run
from tests.test_redis_acl import documented_acl

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


@pytest.fixture
def denied_url(
    redis_target: RedisTarget, redis_client: redis.Redis, prefix: str
) -> Iterator[Callable[[str], str]]:
    """``denied_url(rule)``: the URL of a new ACL user made from the documented
    redis+stream line under this test's prefix, less ``rule`` (``+xpending``)."""
    made: list[str] = []

    def make(rule: str) -> str:
        user, password = f"bk-acl-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        rules = [
            f">{password}" if r == ">CHANGE-ME" else r.replace("brokerkit:", f"{prefix}:")
            for r in documented_acl("stream")
            if r != rule
        ]
        redis_client.execute_command("ACL", "SETUSER", user, *rules)
        made.append(user)
        t = redis_target
        return f"redis+stream://{user}:{password}@{t.host}:{t.port}/{t.db}"

    yield make
    if made:
        redis_client.execute_command("ACL", "DELUSER", *made)


def _receive(subscription: brokerkit.Subscription) -> brokerkit.Delivery:
    delivery = subscription.receive(timeout=PROMPT)
    assert delivery is not None
    return delivery


# -- a command denied inside a script is a permission error, never "not pending" ----


def test_a_nack_with_xpending_denied_is_a_permission_error(
    denied_url: Callable[[str], str], prefix: str
) -> None:
    with brokerkit.connect(denied_url("+xpending"), prefix=prefix) as broker:
        broker.publish("orders", "x")
        delivery = _receive(broker.subscribe("orders"))
        with pytest.raises(PermissionDenied, match="XPENDING") as denied:
            delivery.nack(requeue=False)
        assert denied.value.command == "XPENDING"
        assert broker.inspect(broker.dead_letter_topic("orders")).length == 0


def test_a_fetch_with_xautoclaim_denied_is_a_permission_error(
    denied_url: Callable[[str], str], prefix: str
) -> None:
    with brokerkit.connect(denied_url("+xautoclaim"), prefix=prefix) as broker:
        broker.publish("orders", "x")
        with pytest.raises(PermissionDenied, match="XAUTOCLAIM"):
            broker.subscribe("orders").receive(timeout=PROMPT)


def test_removing_idle_consumers_with_xinfo_denied_is_a_permission_error(
    denied_url: Callable[[str], str], make: Make, prefix: str
) -> None:
    make().create_group("orders", "workers")
    broker = brokerkit.connect(denied_url("+xinfo|consumers"), prefix=prefix)
    with broker, pytest.raises(PermissionDenied, match="XINFO"):
        broker.remove_idle_consumers("orders", "workers", idle=0)


def test_the_reaper_with_xpending_denied_logs_a_permission_error(
    denied_url: Callable[[str], str], make: Make, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Dead-lettering in the background never stops in silence."""
    url = denied_url("+xpending")
    with brokerkit.connect(url, prefix=prefix, max_deliveries=1, visibility_timeout=0.2) as broker:
        subscription = broker.subscribe("orders")
        deadline = time.monotonic() + 15
        while "XPENDING" not in caplog.text:
            assert time.monotonic() < deadline, "the reaper never reported the denied XPENDING"
            assert subscription.receive(timeout=0.05) is None
    assert "refused the XPENDING command" in caplog.text


def test_an_async_ack_with_xpending_denied_is_a_permission_error(
    denied_url: Callable[[str], str], prefix: str
) -> None:
    url = denied_url("+xpending")

    async def main() -> None:
        async with brokerkit.aio.connect(url, prefix=prefix) as broker:
            await broker.publish("orders", "x")
            subscription = await broker.subscribe("orders")
            delivery = await subscription.receive(timeout=PROMPT)
            assert delivery is not None
            with pytest.raises(PermissionDenied, match="XPENDING"):
                await delivery.ack()

    run(main())


# -- corrupt bookkeeping keys are repaired, or named with how to fix them ----------


def _lease_key(broker: RedisStreamBroker, topic: str) -> str:
    return broker.stream_key(topic) + ":vt"


def _lost_key(broker: RedisStreamBroker, topic: str) -> str:
    return broker.stream_key(topic) + ":lost"


@pytest.mark.parametrize("garbage", [b"not-a-number", b"nan", b"inf", b""])
def test_a_non_numeric_lease_length_is_repaired_and_blocks_nothing(
    make: Make, redis_client: redis.Redis, garbage: bytes
) -> None:
    broker = make(visibility_timeout=2)
    broker.create_group("orders", "workers")
    redis_client.hset(_lease_key(broker, "orders"), "workers", garbage)
    ids = broker.publish_many("orders", ["a", "b"])
    subscription = broker.subscribe("orders", group="workers")
    got = [_receive(subscription), _receive(subscription)]
    assert [d.id for d in got] == ids
    broker.ack(*got)
    assert redis_client.hget(_lease_key(broker, "orders"), "workers") == b"2000"


def test_a_lease_length_corrupted_after_subscribing_is_repaired_on_the_next_fetch(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make(visibility_timeout=0.3, max_deliveries=5)
    subscription = broker.subscribe("orders", group="workers")
    assert subscription.receive(timeout=0) is None
    redis_client.hset(_lease_key(broker, "orders"), "workers", "garbage")
    message_id = broker.publish("orders", "x")
    held = _receive(subscription)
    assert held.id == message_id
    held.nack(requeue=True)  # the next fetch reclaims, reading the lease length
    again = _receive(subscription)
    assert (again.id, again.attempt) == (message_id, 2)
    again.ack()
    assert redis_client.hget(_lease_key(broker, "orders"), "workers") == b"300"


def test_a_non_integer_lost_count_is_reset_and_inspect_still_works(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make(visibility_timeout=0.2)
    broker.create_group("orders", "workers")
    redis_client.hset(_lost_key(broker, "orders"), "workers", "garbage")
    lost = broker.publish("orders", "trimmed while held")
    key = broker.stream_key("orders")
    assert redis_client.xreadgroup("workers", "dead", {key: ">"}, count=1)
    assert broker.inspect("orders").groups[0].lost_to_trimming == 0  # garbage reads as 0
    broker.delete_entries("orders", redis_client.xrange(key)[0][0].decode())
    good = broker.publish("orders", "good")
    subscription = broker.subscribe("orders", group="workers")
    deadline = time.monotonic() + PROMPT
    seen = []
    while good not in seen:
        assert time.monotonic() < deadline, "the topic is blocked"
        delivery = subscription.receive(timeout=0.5)
        if delivery is not None:
            seen.append(delivery.id)
            delivery.ack()
    assert lost not in seen
    deadline = time.monotonic() + PROMPT
    while redis_client.hget(_lost_key(broker, "orders"), "workers") != b"1":
        assert time.monotonic() < deadline, "the lost entry was never counted"
        assert subscription.receive(timeout=0.1) is None
    assert broker.inspect("orders").groups[0].lost_to_trimming == 1


@pytest.mark.parametrize("which", ["vt", "lost"])
def test_a_bookkeeping_key_of_another_type_is_an_error_naming_it(
    make: Make, redis_client: redis.Redis, which: str
) -> None:
    broker = make(visibility_timeout=0.2)
    broker.create_group("orders", "workers")
    key = broker.stream_key("orders") + ":" + which
    redis_client.set(key, "not a hash")
    if which == "lost":  # counted only when a held entry was trimmed
        stream = broker.stream_key("orders")
        broker.publish("orders", "x")
        assert redis_client.xreadgroup("workers", "dead", {stream: ">"}, count=1)
        broker.delete_entries("orders", redis_client.xrange(stream)[0][0].decode())

    def use_the_topic() -> None:
        subscription = broker.subscribe("orders", group="workers")
        deadline = time.monotonic() + PROMPT
        while time.monotonic() < deadline:  # the lost entry is counted on a reclaim
            subscription.receive(timeout=0.1)

    with pytest.raises(BrokerError) as failed:
        use_the_topic()
    message = str(failed.value)
    assert key in message
    assert f"DEL {key}" in message
    redis_client.delete(key)
    broker.subscribe("orders", group="workers").receive(timeout=0)  # works again


# -- an idle consumer hands an expired lease out within 1.25 visibility timeouts ----


@pytest.mark.parametrize("api", ["sync", "async"])
def test_an_idle_consumer_reclaims_an_expired_lease_within_a_quarter_timeout(
    make: Make, redis_target: RedisTarget, redis_client: redis.Redis, prefix: str, api: str
) -> None:
    """The blocking read of a consumer with nothing new waits at most a quarter of the
    visibility timeout, so an expired lease comes back within 1.25 timeouts, not
    after the read's own wait (a second) ran out."""
    vt = 0.2
    broker = make(visibility_timeout=vt)
    broker.create_group("jobs", "workers")
    lost = broker.publish("jobs", "held by a consumer that died")
    leased = time.monotonic()
    assert redis_client.xreadgroup("workers", "dead", {broker.stream_key("jobs"): ">"}, count=1)
    if api == "sync":
        subscription = broker.subscribe("jobs", group="workers")
        delivery = subscription.receive(timeout=10)
        back = time.monotonic()
        assert delivery is not None
        delivery.ack()
    else:
        url = redis_target.url("redis+stream", prefix=prefix)

        async def main() -> tuple[str | None, float]:
            async with brokerkit.aio.connect(url, visibility_timeout=vt) as aio:
                subscription = await aio.subscribe("jobs", group="workers")
                got = await subscription.receive(timeout=10)
                at = time.monotonic()
                assert got is not None
                await got.ack()
                return got.id, at

        got_id, back = run(main())
        delivery = None
        assert got_id == lost
    assert delivery is None or delivery.id == lost
    # 1.25 * vt is 0.25 s; a read that blocks for its full second comes back after ~1 s.
    assert back - leased < 1.25 * vt + 0.45, f"came back after {back - leased:.2f} s"
