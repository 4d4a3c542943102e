"""memory://: a closed pattern subscription's own group is never read again, and yet a
delivery of it still follows the dead-letter rule of any group: nacked at
``max_deliveries`` (with requeue, or without) or left until its lease runs out at that
attempt, it goes to the dead-letter topic, as the settlement hooks report; below the
limit, a requeue is dropped (nothing would deliver it), and no dead letter is reported
or stored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import ManualClock


class DeadLetters:
    """Records ``brokerkit_on_dead_letter``."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, str]] = []

    @brokerkit.hookimpl
    def brokerkit_on_dead_letter(self, deliveries: Any, reason: str) -> None:
        self.reported.extend((delivery.topic, reason) for delivery in deliveries)


@pytest.fixture
def dead() -> Iterator[DeadLetters]:
    recorder = DeadLetters()
    brokerkit.get_plugin_manager().register(recorder)
    try:
        yield recorder
    finally:
        brokerkit.get_plugin_manager().unregister(recorder)


def _received_then_closed(broker: brokerkit.Broker) -> brokerkit.Delivery:
    """A delivery of ``room:1`` whose pattern subscription (its own group) is closed."""
    subscription = broker.subscribe("room:*", pattern=True)
    broker.publish("room:1", "hi")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.attempt == 1
    subscription.close()
    return delivery


@pytest.mark.parametrize("requeue", [True, False])
def test_a_nack_at_the_limit_after_the_close_is_dead_lettered_as_reported(
    dead: DeadLetters, requeue: bool
) -> None:
    with brokerkit.connect("memory://", max_deliveries=1) as broker:
        _received_then_closed(broker).nack(requeue=requeue)
        info = broker.inspect("room:1")
        assert info.dead_lettered == 1
        assert info.in_flight == 0 and not info.groups
    reason = "max_deliveries" if requeue else "rejected"
    assert dead.reported == [("room:1", reason)]


def test_a_requeue_below_the_limit_after_the_close_is_dropped_unreported(
    dead: DeadLetters,
) -> None:
    with brokerkit.connect("memory://", max_deliveries=2) as broker:
        _received_then_closed(broker).nack()
        info = broker.inspect("room:1")
        assert info.dead_lettered == 0
        assert info.in_flight == 0 and not info.groups
    assert dead.reported == []


def test_a_lease_run_out_at_the_limit_after_the_close_is_dead_lettered() -> None:
    clock = ManualClock()
    with brokerkit.connect(
        "memory://", max_deliveries=1, visibility_timeout=10, clock=clock
    ) as broker:
        _received_then_closed(broker)
        clock.advance(10)
        info = broker.inspect("room:1")
        assert info.dead_lettered == 1
        assert info.in_flight == 0 and not info.groups


def test_an_asyncio_nack_at_the_limit_after_the_close_is_dead_lettered_as_reported(
    dead: DeadLetters,
) -> None:
    async def main() -> int:
        async with brokerkit.aio.connect("memory://", max_deliveries=1) as broker:
            subscription = await broker.subscribe("room:*", pattern=True)
            await broker.publish("room:1", "hi")
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            await subscription.close()
            await delivery.nack()
            return (await broker.inspect("room:1")).dead_lettered

    assert asyncio.run(main()) == 1
    assert dead.reported == [("room:1", "max_deliveries")]
