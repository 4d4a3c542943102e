"""``subscribe`` and ``consume`` take ``pattern`` as a bool: anything else is refused
with InvalidOption, as ``nack``'s ``requeue`` is. It was read by its truth, so
``pattern="false"`` (a setting read from the environment) or ``pattern="no"`` made a
pattern subscription, and on a backend without patterns raised Unsupported "subscribe
to a pattern" for a caller who had asked for none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption

NOT_BOOLS = ["false", "no", 1, 0, None]


@pytest.mark.parametrize("value", NOT_BOOLS)
def test_subscribe_refuses_a_pattern_flag_that_is_no_bool(value: object) -> None:
    with brokerkit.connect("memory://") as broker, pytest.raises(InvalidOption) as refused:
        broker.subscribe("orders", pattern=value)  # type: ignore[arg-type]
    assert "pattern must be True or False" in str(refused.value)
    assert type(value).__name__ in str(refused.value)


def test_consume_refuses_a_pattern_flag_that_is_no_bool() -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("orders", b"x")
        with pytest.raises(InvalidOption, match="pattern must be True or False"):
            list(broker.consume("orders", timeout=0, pattern="no"))  # type: ignore[arg-type]
        assert broker.inspect("orders").length == 1


def test_a_backend_without_patterns_is_not_asked_for_one(
    redis_broker: Callable[..., Any],
) -> None:
    broker = redis_broker("redis+stream")
    with pytest.raises(InvalidOption, match="pattern must be True or False"):
        broker.subscribe("orders", pattern="false")


def test_the_asyncio_broker_refuses_it_too() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            with pytest.raises(InvalidOption, match="pattern must be True or False"):
                await broker.subscribe("orders", pattern="no")  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_bool_pattern_flag_still_works() -> None:
    with brokerkit.connect("memory://") as broker:
        with broker.subscribe("orders.*", pattern=True) as subscription:
            broker.publish("orders.eu", b"x")
            delivery = subscription.receive(0)
            assert delivery is not None
            delivery.ack()
        with broker.subscribe("orders.eu", pattern=False) as subscription:
            delivery = subscription.receive(0)
            assert delivery is not None
            delivery.ack()
