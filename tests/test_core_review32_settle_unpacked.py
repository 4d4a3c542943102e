"""``broker.ack([d1, d2])`` (a list where ``ack(*deliveries)`` is meant, a common slip)
is refused saying to pass the deliveries unpacked; it said only "expected a Delivery,
got list". ``broker.nack(d, False)`` and ``broker.extend(d, 30)`` (a setting passed
where deliveries go) are told the settings are keywords; they were told "expected a
Delivery, got bool". Nothing is settled either way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import DeliveryError

HINT = "pass them unpacked, as in broker.ack(*deliveries)"


@pytest.mark.parametrize("shape", [list, tuple, set, iter, lambda ds: (d for d in ds)])
@pytest.mark.parametrize("call", ["ack", "nack", "extend"])
def test_a_collection_of_deliveries_is_told_to_be_unpacked(
    shape: Callable[[list[Any]], Any], call: str
) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish_many("orders", [b"1", b"2"])
        with broker.subscribe("orders", prefetch=2) as subscription:
            deliveries = [subscription.receive(0), subscription.receive(0)]
            with pytest.raises(DeliveryError) as refused:
                getattr(broker, call)(shape(deliveries))
            assert HINT in str(refused.value)
            assert not any(d.settled for d in deliveries if d is not None)
            broker.ack(*deliveries)


def test_the_asyncio_broker_says_so_too() -> None:
    async def main() -> None:
        async with brokerkit.aio.connect("memory://") as broker:
            await broker.publish("orders", b"1")
            subscription = await broker.subscribe("orders")
            delivery = await subscription.receive(0)
            with pytest.raises(DeliveryError, match=r"broker\.ack\(\*deliveries\)"):
                await broker.ack([delivery])  # type: ignore[arg-type]
            await broker.ack(delivery)  # type: ignore[arg-type]
            await subscription.close()

    asyncio.run(main())


def test_a_lone_wrong_value_is_still_named() -> None:
    with brokerkit.connect("memory://") as broker, pytest.raises(DeliveryError) as refused:
        broker.ack(None)  # type: ignore[arg-type]
    assert str(refused.value) == "expected a Delivery, got NoneType"


@pytest.mark.parametrize(
    ("call", "argument"), [("nack", False), ("extend", 30), ("nack", 5.0), ("ack", True)]
)
def test_a_setting_passed_where_deliveries_go_is_told_to_be_a_keyword(
    call: str, argument: object
) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("orders", b"1")
        with broker.subscribe("orders") as subscription:
            delivery = subscription.receive(0)
            assert delivery is not None
            with pytest.raises(DeliveryError) as refused:
                getattr(broker, call)(delivery, argument)
            assert "the settings are keywords" in str(refused.value)
            assert "extend(*deliveries, seconds=30)" in str(refused.value)
            assert not delivery.settled
            delivery.ack()
