"""A delivery of the other API given to settle (one memory:// name is one broker for
the sync and asyncio APIs, so a test may well mix them) is named as such, with the
broker that delivered it. Before, an asyncio broker said "expected a Delivery, got
Delivery" of a sync delivery, a message that contradicts itself; the delivery
itself was left as it was, and still is."""

from __future__ import annotations

import asyncio

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import DeliveryError


def test_deliveries_of_the_other_api_are_named_with_their_broker() -> None:
    async def main() -> None:
        with brokerkit.connect("memory://core29-mixed") as sync_broker:
            async with brokerkit.aio.connect("memory://core29-mixed") as async_broker:
                await async_broker.publish_many("t", [1, 2])
                sync_delivery = sync_broker.subscribe("t").receive(1)
                async_delivery = await (await async_broker.subscribe("t")).receive(1)
                assert sync_delivery is not None and async_delivery is not None

                with pytest.raises(DeliveryError) as raised:
                    await async_broker.ack(sync_delivery)  # type: ignore[arg-type]
                assert str(raised.value) == (
                    f"expected a Delivery of this broker (AsyncDelivery), got Delivery "
                    f"{sync_delivery.id} of {sync_broker!r}: a delivery is settled through "
                    "the broker that delivered it (its own ack() and nack() do that)"
                )
                with pytest.raises(DeliveryError) as raised:
                    sync_broker.nack(async_delivery)  # type: ignore[arg-type]
                assert str(raised.value).startswith(
                    "expected a Delivery of this broker (Delivery), got AsyncDelivery "
                    f"{async_delivery.id} of {async_broker!r}:"
                )

                sync_delivery.ack()
                await async_delivery.ack()
                assert (await async_broker.inspect("t")).in_flight == 0

    asyncio.run(main())


def test_what_is_no_delivery_at_all_is_still_named_by_its_type() -> None:
    broker = brokerkit.connect("memory://")
    with broker, pytest.raises(DeliveryError, match=r"^expected a Delivery, got str$"):
        broker.ack("not a delivery")  # type: ignore[arg-type]
