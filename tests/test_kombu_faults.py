"""kombu+amqp when RabbitMQ closes a connection (as ``rabbitmqctl close_connection``
or a broker restart does): the consume loop and publishing carry on, nothing is lost,
and deliveries of the dead connection are stale."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import StaleDelivery
from tests.kombu_rabbitmq import close_connections, kombu_broker, rabbitmq
from tests.waiting import wait_until

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def test_receiving_carries_on_after_the_server_closes_the_connection(
    kombu_broker: Factory,
) -> None:
    publisher, consumer = kombu_broker(), kombu_broker()
    ids = publisher.publish_many("work", ["a", "b", "c"])
    subscription = consumer.subscribe("work")
    held = subscription.receive(timeout=5)
    assert held is not None
    assert close_connections(consumer.connection_name) == 2  # publishing and reading
    ids += publisher.publish_many("work", ["d", "e"])
    got = {}
    while len(got) < len(ids):
        delivery = subscription.receive(timeout=10)
        assert delivery is not None, f"only {len(got)} of {len(ids)} came after the reconnect"
        got[delivery.id] = delivery
        delivery.ack()
    assert set(got) == set(ids), "nothing is lost across a reconnect"
    assert got[held.id].attempt == 2, "the delivery the dead connection held comes back"
    with pytest.raises(StaleDelivery):
        held.ack()
    assert subscription.receive(timeout=0.2) is None, "an acked message came back"


#: The timeout of the receive that must outlast the close: longer than the three
#: ``rabbitmqctl`` runs of :func:`close_connections` take on a loaded machine (each
#: starts an Erlang VM: 2 to 9 s in all on a busy machine, over 20 s under the full
#: suite, when a 20 s receive ran out before the close and the publish). It bounds a
#: failure only: the message ends the receive.
_RECEIVE_GUARD = 90.0


def test_a_receive_waiting_on_an_empty_queue_survives_the_close(kombu_broker: Factory) -> None:
    publisher, consumer = kombu_broker(), kombu_broker()
    subscription = consumer.subscribe("idle")
    outcome: list[Any] = []

    def receive() -> None:
        try:
            outcome.append(subscription.receive(timeout=_RECEIVE_GUARD))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receive)
    thread.start()
    # The receive waits as a consumer (an empty queue) before its connection is closed.
    wait_until(
        lambda: any(reader.consumer_tag is not None for reader in list(consumer._readers)),
        "the receive waiting as a consumer",
    )
    assert close_connections(consumer.connection_name) == 2  # publishing and reading
    message_id = publisher.publish("idle", "late")
    thread.join(_RECEIVE_GUARD + 5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and getattr(outcome[0], "id", None) == message_id, (
        f"the receive under way reconnects and gets the message, got {outcome!r}"
    )
    outcome[0].ack()


def test_publishing_reconnects_after_the_server_closes_the_connection(
    kombu_broker: Factory,
) -> None:
    publisher, consumer = kombu_broker(), kombu_broker()
    subscription = consumer.subscribe("pub")
    first = publisher.publish("pub", 1)
    assert close_connections(publisher.connection_name) == 1
    second = publisher.publish("pub", 2)
    got = [subscription.receive(timeout=5) for _ in range(2)]
    assert [d.id for d in got if d is not None] == [first, second]
    for delivery in got:
        assert delivery is not None
        delivery.ack()
    assert subscription.receive(timeout=0.2) is None, "a message was published twice"
