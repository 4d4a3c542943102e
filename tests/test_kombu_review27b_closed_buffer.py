"""kombu+amqp: once RabbitMQ closed a subscription's channel (it has every delivery of
it back), no receive hands out a delivery fetched on that channel: it would be
processed, refused on its ack (StaleDelivery) and delivered again. Real RabbitMQ: an
ack of a delivery tag the channel never had makes RabbitMQ close it (PRECONDITION_FAILED,
asynchronously: the ack has no answer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.kombu_rabbitmq import kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]

BODIES = ["c1", "c2", "c3", "c4", "c5"]
#: Bounds the receives that wait for the close to be read (each waits 0.05 s).
_READS = 200


def _receive_all(subscription: Any, count: int) -> list[str]:
    """Receive ``count`` deliveries, acking each (an ack of a stale one raises)."""
    bodies = []
    for _ in range(count):
        delivery = subscription.receive(timeout=10)
        assert delivery is not None, f"only {bodies} came"
        delivery.ack()  # raised StaleDelivery: handed out from a closed channel
        bodies.append(delivery.body)
    assert subscription.receive(timeout=0) is None
    return bodies


def _close_read(subscription: Any, channel: Any) -> bool:
    """Whether the close of the subscription's ``channel`` was read: noted (by a
    receive), or the channel dropped already (by the reaper, which also reads it)."""
    reader = subscription.state
    return reader.closed_by_server is not None or reader.channel is not channel


def test_a_close_read_by_another_receive_drops_the_closed_ones_buffer(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    with (
        broker.subscribe("closed", group="w", prefetch=5) as closed,
        broker.subscribe("other", group="w") as other,
    ):
        broker.publish_many("closed", BODIES)
        first = closed.receive(timeout=10)
        assert first is not None and first.body == "c1"
        assert len(closed._buffer) == 4  # fetched with it, not handed out yet
        channel = closed.state.channel
        with broker._reading_link.lock:
            channel.basic_ack(999_999)  # RabbitMQ closes that channel
        # The other subscription's receives read the close (only noted there), unless
        # the reaper's heartbeat read it first and dropped the channel at once.
        for _ in range(_READS):
            if _close_read(closed, channel):
                break
            assert other.receive(timeout=0.05) is None
        assert _close_read(closed, channel), "the close was never read"
        # Every message comes again, c1 too (its lease went with the channel), each
        # once, and each ack succeeds: none is handed out from the gone channel.
        assert sorted(_receive_all(closed, 5)) == BODIES


def test_a_close_read_during_a_burst_throws_its_deliveries_away(
    kombu_broker: Factory,
) -> None:
    broker = kombu_broker()
    with broker.subscribe("closed", group="w", prefetch=5) as closed:
        assert closed.receive(timeout=0) is None  # opens its channel (empty queue)
        channel = closed.state.channel
        broker.publish_many("closed", BODIES)
        original = channel.basic_consume

        def consume(*args: Any, **kwargs: Any) -> Any:
            tag = original(*args, **kwargs)
            channel.basic_consume = original
            # The burst (c2..c5 after c1's basic.get) waits for its deliveries, and
            # reads the channel's close among them (as the burst's own wait would:
            # read here, until it came, whatever the order of the frames).
            channel.basic_ack(999_999)
            for _ in range(_READS):
                if closed.state.closed_by_server is not None:
                    break
                broker._reading_link.drain(0.05)
            assert closed.state.closed_by_server is not None, "the close was never read"
            return tag

        channel.basic_consume = consume
        try:
            bodies = _receive_all(closed, 5)
        finally:
            channel.basic_consume = original
        assert sorted(bodies) == BODIES
