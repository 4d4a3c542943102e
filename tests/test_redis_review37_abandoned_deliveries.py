"""A delivery the application lets go of unsettled comes back (review 37).

The lease keeper renews every lease a consumer holds. It held the deliveries themselves
(and redis+stream's last read batch held them again), so one the application let go of
unsettled, as a handler's exception leaving the ``for``/``async for`` loop does, was
kept alive and renewed for as long as the broker stayed open: its message never came
back, although ACK promises that an unsettled delivery comes back after the visibility
timeout. Now a delivery nothing but the broker's bookkeeping references is no longer
renewed: its lease runs out and a second consumer gets it as attempt 2. One the
application still holds keeps its lease past several visibility timeouts.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.conftest import RedisTarget
from tests.test_redis_list_aio import run_async
from tests.waiting import wait_until, wait_until_async

SCHEMES = ["redis+list", "redis+stream"]
#: The visibility timeout of these tests: the keeper renews every third of it.
VT = 1
#: A hang guard, not a pace: what comes back comes back within about one VT.
LIMIT = 10 * VT


class HandlerFailed(Exception):
    pass


def _collected(ref: weakref.ref[Any]) -> bool:
    """Whether the delivery ``ref`` names is gone (the keeper lets go of it at its next
    beat; a full collection first, for what a test's own frames may hold in a cycle)."""
    gc.collect()
    return ref() is None


def _wait_collected(ref: weakref.ref[Any]) -> None:
    wait_until(lambda: _collected(ref), "the delivery let go of to be collected", LIMIT)


async def _wait_collected_async(ref: weakref.ref[Any]) -> None:
    await wait_until_async(lambda: _collected(ref), "the delivery let go of to be collected", LIMIT)


def _connect(redis_target: RedisTarget, scheme: str, prefix: str) -> brokerkit.Broker:
    return brokerkit.connect(redis_target.url(scheme), prefix=prefix, visibility_timeout=VT)


def _aconnect(redis_target: RedisTarget, scheme: str, prefix: str) -> Any:
    return brokerkit.aio.connect(redis_target.url(scheme), prefix=prefix, visibility_timeout=VT)


def _comes_back(other: brokerkit.Broker, message_id: str) -> None:
    """A second consumer of the group gets the message again, as attempt 2, while the
    first broker stays open."""
    with other.subscribe("jobs", group="g") as sub:
        again = sub.receive(timeout=LIMIT)
        assert again is not None, "the message never came back"
        assert (again.id, again.attempt) == (message_id, 2)
        again.ack()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delivery_left_by_a_failed_handler_comes_back(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    with (
        _connect(redis_target, scheme, prefix) as broker,
        _connect(redis_target, scheme, prefix) as other,
    ):
        broker.publish("jobs", {"x": 1})
        try:
            for delivery in broker.consume("jobs", group="g", timeout=LIMIT):
                ref = weakref.ref(delivery)
                message_id = delivery.id
                raise HandlerFailed
        except HandlerFailed:
            pass
        del delivery
        _wait_collected(ref)
        _comes_back(other, message_id)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_received_delivery_dropped_unsettled_comes_back(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    with (
        _connect(redis_target, scheme, prefix) as broker,
        _connect(redis_target, scheme, prefix) as other,
    ):
        broker.publish("jobs", {"x": 1})
        # The subscription stays open (redis+stream keeps its last read for a count ack).
        with broker.subscribe("jobs", group="g") as sub:
            delivery = sub.receive(timeout=LIMIT)
            assert delivery is not None
            ref, message_id = weakref.ref(delivery), delivery.id
            del delivery
            _wait_collected(ref)
            _comes_back(other, message_id)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delivery_still_held_keeps_its_lease(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    with (
        _connect(redis_target, scheme, prefix) as broker,
        _connect(redis_target, scheme, prefix) as other,
    ):
        broker.publish("jobs", {"x": 1})
        with broker.subscribe("jobs", group="g") as sub:
            delivery = sub.receive(timeout=LIMIT)
            assert delivery is not None
            with other.subscribe("jobs", group="g") as rival:
                # Several visibility timeouts: renewed all along, never given out again.
                assert rival.receive(timeout=4 * VT) is None
            delivery.ack()  # still its own: not stale


async def _comes_back_async(other: Any, message_id: str) -> None:
    rival = await other.subscribe("jobs", group="g")
    again = await rival.receive(timeout=LIMIT)
    assert again is not None, "the message never came back"
    assert (again.id, again.attempt) == (message_id, 2)
    await again.ack()
    await rival.close()


@pytest.mark.parametrize("scheme", SCHEMES)
@run_async
async def test_async_a_delivery_left_by_a_failed_handler_comes_back(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    async with (
        _aconnect(redis_target, scheme, prefix) as broker,
        _aconnect(redis_target, scheme, prefix) as other,
    ):
        await broker.publish("jobs", "fine")
        await broker.publish("jobs", "fails")
        # The second fetch's delivery fails (for the first fetch's, see below).
        sub = await broker.subscribe("jobs", group="g")
        try:
            async for delivery in sub:
                if delivery.body == "fine":
                    await delivery.ack()
                    continue
                ref = weakref.ref(delivery)
                message_id = delivery.id
                raise HandlerFailed
        except HandlerFailed:
            pass
        del delivery
        await _wait_collected_async(ref)
        await _comes_back_async(other, message_id)
        await sub.close()


@pytest.mark.parametrize("fetch", ["first", "later"])
@pytest.mark.parametrize("scheme", SCHEMES)
@run_async
async def test_async_a_received_delivery_dropped_unsettled_comes_back(
    redis_target: RedisTarget, prefix: str, scheme: str, fetch: str
) -> None:
    """Of the subscription's first fetch (which opens its reader connection, whose
    tasks keep the fetch's context) or of a later one."""
    async with (
        _aconnect(redis_target, scheme, prefix) as broker,
        _aconnect(redis_target, scheme, prefix) as other,
    ):
        if fetch == "later":
            await broker.publish("jobs", "fine")
        await broker.publish("jobs", "dropped")
        sub = await broker.subscribe("jobs", group="g")
        if fetch == "later":
            first = await sub.receive(timeout=LIMIT)
            assert first is not None
            await first.ack()
        delivery = await sub.receive(timeout=LIMIT)
        assert delivery is not None
        ref, message_id = weakref.ref(delivery), delivery.id
        del delivery
        await _wait_collected_async(ref)
        await _comes_back_async(other, message_id)
        await sub.close()


@pytest.mark.parametrize("scheme", SCHEMES)
@run_async
async def test_async_a_delivery_still_held_keeps_its_lease(
    redis_target: RedisTarget, prefix: str, scheme: str
) -> None:
    async with (
        _aconnect(redis_target, scheme, prefix) as broker,
        _aconnect(redis_target, scheme, prefix) as other,
    ):
        await broker.publish("jobs", {"x": 1})
        sub = await broker.subscribe("jobs", group="g")
        delivery = await sub.receive(timeout=LIMIT)
        assert delivery is not None
        rival = await other.subscribe("jobs", group="g")
        assert await rival.receive(timeout=4 * VT) is None
        await rival.close()
        await delivery.ack()  # still its own: not stale
        await sub.close()
