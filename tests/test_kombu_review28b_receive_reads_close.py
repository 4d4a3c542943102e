"""kombu+amqp: a receive that itself reads RabbitMQ's close of its own subscription's
channel goes on over a new channel, as the docs promise for a channel RabbitMQ closes on
its own (its ``consumer_timeout``; here the same close, provoked at once by an ack of a
delivery tag RabbitMQ never sent: see :func:`close_its_channel`).

The receive raised BrokerError ("RabbitMQ closed a channel ... PRECONDITION_FAILED")
instead: a close that no other call read first (the reaper paused: see
:class:`PausedReaper`) waits on the socket until the receive's own request on the
channel (``basic.get`` when it pulls, ``basic.cancel`` when its consumer holds as many
as its qos) reads it, and py-amqp raises it to the call waiting on that channel. What
the closed channel held comes again with the next attempt, to this receive; the
delivery handed out before raises StaleDelivery on its settle, its lost lease reported
once. Under the sync API and brokerkit.aio alike. Real RabbitMQ, under the test's own
prefix.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit.aio
from brokerkit.exceptions import StaleDelivery
from tests.conftest import LostLeases, lost_leases
from tests.kombu_rabbitmq import close_and_delete, kombu_broker, rabbitmq
from tests.test_kombu_review27_channel_closed import close_its_channel
from tests.test_kombu_review28_consumer_timeout import PausedReaper

__all__ = ["kombu_broker", "lost_leases", "rabbitmq"]

Factory = Callable[..., Any]


def _consumer_registered(subscription: Any) -> None:
    """Check that the delivery ``pushed`` came to the subscription's consumer, which
    its qos of 1 now keeps from pushing more (so its next receive cancels it first)."""
    reader = subscription.state
    reader = getattr(reader, "state", reader)  # (brokerkit.aio: the sync twin's)
    assert reader.consumer_tag is not None
    assert reader.saturated()


@pytest.mark.parametrize("how", ["pulled", "pushed"])
def test_a_receive_that_reads_its_channels_close_goes_on_over_a_new_one(
    kombu_broker: Factory, lost_leases: LostLeases, how: str
) -> None:
    broker = kombu_broker(visibility_timeout=60)
    reaper = PausedReaper(broker)
    with broker.subscribe("closing", group="workers", prefetch=1) as workers:
        if how == "pulled":
            broker.publish("closing", "held")
            held = workers.receive(timeout=5)  # (basic.get: the queue had it)
            assert workers.state.consumer_tag is None
        else:
            assert workers.receive(timeout=0.2) is None  # (a consumer is registered)
            broker.publish("closing", "held")
            held = workers.receive(timeout=5)
            _consumer_registered(workers)
        assert held is not None and (held.body, held.attempt) == ("held", 1)
        reaper.pause()  # (so that the receive is the call that reads the close)
        close_its_channel(broker, workers)  # as consumer_timeout closes it
        assert workers.state.closed_by_server is None  # (nothing read it yet)
        again = workers.receive(timeout=5)  # raised BrokerError (PRECONDITION_FAILED)
        assert again is not None
        assert (again.id, again.body, again.attempt) == (held.id, "held", 2)
        assert again.redelivered
        with pytest.raises(StaleDelivery) as raised:
            held.ack()
        assert "closed the channel" in str(raised.value), raised.value
        assert [d.id for d in lost_leases.lost] == [held.id]
        again.ack()
        reaper.resume()
        broker.publish("closing", "next")
        after = workers.receive(timeout=5)
        assert after is not None and (after.body, after.attempt) == ("next", 1)
        after.ack()
    assert [d.id for d in lost_leases.lost] == [held.id], "reported more than once"


@pytest.mark.parametrize("how", ["pulled", "pushed"])
def test_an_asyncio_receive_that_reads_its_channels_close_goes_on(
    rabbitmq: str, lost_leases: LostLeases, how: str
) -> None:
    """The same through brokerkit.aio (the thread adapter over the sync broker)."""
    made: list[Any] = []

    async def main() -> None:
        broker = await brokerkit.aio.connect(
            rabbitmq, prefix=f"bkk-{uuid.uuid4().hex[:12]}", visibility_timeout=60
        )
        made.append(broker.sync)  # (closed, and what it declared deleted, at the end)
        try:
            reaper = await asyncio.to_thread(PausedReaper, broker.sync)
            workers = await broker.subscribe("closing", group="workers", prefetch=1)
            if how == "pulled":
                await broker.publish("closing", "held")
                held = await workers.receive(timeout=5)
            else:
                assert await workers.receive(timeout=0.2) is None
                await broker.publish("closing", "held")
                held = await workers.receive(timeout=5)
                _consumer_registered(workers)
            assert held is not None and (held.body, held.attempt) == ("held", 1)
            await asyncio.to_thread(reaper.pause)
            await asyncio.to_thread(close_its_channel, broker.sync, workers.state)
            again = await workers.receive(timeout=5)  # raised BrokerError
            assert again is not None
            assert (again.id, again.body, again.attempt) == (held.id, "held", 2)
            with pytest.raises(StaleDelivery) as raised:
                await held.ack()
            assert "closed the channel" in str(raised.value), raised.value
            assert [d.id for d in lost_leases.lost] == [held.id]
            assert isinstance(lost_leases.lost[0], brokerkit.aio.AsyncDelivery)
            await again.ack()
            reaper.resume()
            await broker.publish("closing", "next")
            after = await workers.receive(timeout=5)
            assert after is not None and (after.body, after.attempt) == ("next", 1)
            await after.ack()
            await workers.close()
        finally:
            await broker.close()

    try:
        asyncio.run(main())
    finally:
        close_and_delete(made)
    assert len(lost_leases.lost) == 1, "reported more than once"
