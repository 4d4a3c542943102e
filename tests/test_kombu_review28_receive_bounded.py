"""kombu+amqp: a receive goes on over a new channel after RabbitMQ closed its own on
its own at most twice; the third such close raises.

cafeff0 had a receive that reads the close of its subscription's channel go on over a
new channel, without a bound: a server closing every new channel kept the receive
spinning, a channel opened each pass, past its own timeout. Here every channel the
broker's reading connection opens is closed by RabbitMQ at once (an ack of a delivery
tag it never sent, as :func:`close_its_channel` does), for the first ten channels;
the reaper is paused, so that the receive is the call that reads each close. Real
RabbitMQ, under the test's own prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import BrokerError
from tests.kombu_rabbitmq import kombu_broker, rabbitmq
from tests.test_kombu_review28_consumer_timeout import PausedReaper

__all__ = ["kombu_broker", "rabbitmq"]

Factory = Callable[..., Any]


def test_a_receive_whose_every_new_channel_is_closed_raises_after_two_recoveries(
    kombu_broker: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = kombu_broker(visibility_timeout=60)
    reaper = PausedReaper(broker)
    with broker.subscribe("closing", group="workers") as workers:
        broker.publish("closing", "waiting")
        link = broker._reading_link
        real = link.channel
        opened: list[Any] = []

        def closed_at_once() -> Any:
            channel = real()
            opened.append(channel)
            if len(opened) <= 10:
                channel.basic_ack(999_999)  # (RabbitMQ closes it, on its own)
            return channel

        reaper.pause()  # (so that the receive is the call that reads each close)
        monkeypatch.setattr(link, "channel", closed_at_once)
        with pytest.raises(BrokerError):
            workers.receive(timeout=5)  # went on over the eleventh channel
        assert len(opened) == 3
        monkeypatch.undo()
        reaper.resume()
        delivery = workers.receive(timeout=5)  # (a channel that stays open: as before)
        assert delivery is not None and delivery.body == "waiting"
        delivery.ack()
