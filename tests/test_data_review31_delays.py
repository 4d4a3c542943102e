"""Delays far in the future are refused once, in core, the same on every backend with
DELAY: a ``publish`` or ``nack`` delay, or an ``at``, that falls due after the end of
the year 9999 is an InvalidOption naming the valid range, and nothing is sent or
settled. memory:// held such a message "forever"; redis+list and redis+stream raised
a bare OverflowError (``math.ceil(delay * 1000)`` of an infinite float) from 1e305
seconds on; every backend took epoch milliseconds given as ``at`` for a time 57,000
years away. What was accepted and sane (years ahead, ``datetime.max``) still is."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import InvalidOption

BACKENDS = ["memory", "redis+list", "redis+stream"]
UTC = datetime.timezone.utc
#: The end of the year 9999, UTC, in epoch seconds (brokerkit._schedule.LATEST_DUE).
LATEST_DUE = 253402300800.0

#: Too far: a "never" of 1e306 seconds, an int too large for a float, epoch
#: milliseconds as ``at``, one second after the latest due time.
TOO_FAR: list[dict[str, Any]] = [
    {"delay": 1e306},
    {"delay": 1.7e308},
    {"delay": 10**30},
    {"delay": LATEST_DUE},
    {"at": 1.7e308},
    {"at": 1_796_600_000_000.0},  # epoch milliseconds of December 2026 (fixed: xdist
    # workers must collect the same ids)
    {"at": LATEST_DUE + 1},
    {
        "at": datetime.datetime(
            9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=2))
        )
    },
]


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        with brokerkit.connect("memory://") as memory:
            yield memory
        return
    factory: Callable[..., Any] = request.getfixturevalue("redis_broker")
    yield factory(request.param)


@pytest.mark.parametrize("kwargs", TOO_FAR, ids=lambda kwargs: repr(kwargs)[:40])
def test_a_due_time_past_the_year_9999_is_refused_and_nothing_is_sent(
    broker: brokerkit.Broker, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidOption, match="by the end of the year 9999") as raised:
        broker.publish("t", "x", **kwargs)
    with pytest.raises(InvalidOption, match="by the end of the year 9999"):
        broker.publish_many("t", ["x", "y"], **kwargs)
    assert "253402300800" in str(raised.value)
    info = broker.inspect("t")
    assert (info.length, info.scheduled) == (0, 0)


def test_epoch_milliseconds_as_at_are_named(broker: brokerkit.Broker) -> None:
    with pytest.raises(InvalidOption, match="epoch seconds are wanted, not milliseconds"):
        broker.publish("t", "x", at=time.time() * 1000)


@pytest.mark.parametrize("delay", [1e306, 10**30, LATEST_DUE])
def test_a_nack_delay_past_the_year_9999_is_refused_and_nothing_is_settled(
    broker: brokerkit.Broker, delay: float
) -> None:
    subscription = broker.subscribe("t", group="g")
    broker.publish("t", "x")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None
    with pytest.raises(InvalidOption, match="by the end of the year 9999"):
        delivery.nack(delay=delay)
    assert not delivery.settled
    delivery.ack()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay": 10 * 365 * 24 * 3600},
        {"at": datetime.datetime.max.replace(tzinfo=UTC)},
        {"at": LATEST_DUE},
    ],
    ids=["ten years", "datetime.max", "the latest due time"],
)
def test_what_was_sane_is_still_held(broker: brokerkit.Broker, kwargs: dict[str, Any]) -> None:
    broker.publish("t", "x", **kwargs)
    info = broker.inspect("t")
    assert (info.length, info.scheduled) == (0, 1)


def test_asyncio_refuses_the_same() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            with pytest.raises(InvalidOption, match="by the end of the year 9999"):
                await broker.publish("t", "x", delay=1e306)
            await broker.publish("t", "x")
            subscription = await broker.subscribe("t")
            delivery = await subscription.receive(timeout=1)
            assert delivery is not None
            with pytest.raises(InvalidOption, match="by the end of the year 9999"):
                await delivery.nack(delay=1e306)
            assert not delivery.settled
            await delivery.ack()

    asyncio.run(main())
