"""kombu+amqp: RabbitMQ's ``consumer_timeout`` closes the channel under a handler that
holds a delivery too long (here the same close is provoked at once: a settle of an
unknown delivery tag on that channel, which RabbitMQ answers as it answers a timed-out
delivery, PRECONDITION_FAILED and the channel closed). What the docs promise: the
handler's ``extend`` or ``ack`` raises StaleDelivery saying that RabbitMQ closed the
channel, the lost lease is reported once to ``brokerkit_on_lease_lost``, and the
subscription's next receive goes on over a new channel, the message coming again with
``attempt`` one higher. Whichever call reads the close: the reaper's heartbeat (nobody
else uses the connection), or the settle itself (the reaper paused meanwhile, so that
it cannot be the one: see :class:`PausedReaper`). Real RabbitMQ; under the test's own
prefix."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import StaleDelivery
from tests.conftest import LostLeases, lost_leases
from tests.kombu_rabbitmq import kombu_broker, rabbitmq
from tests.test_kombu_review27_channel_closed import close_its_channel

__all__ = ["kombu_broker", "lost_leases", "rabbitmq"]

Factory = Callable[..., Any]


def _read_by_the_reaper(subscription: Any) -> None:
    """Wait (polling, with a deadline) until the reaper's sweep has read the close and
    dropped the subscription's channel."""
    deadline = time.monotonic() + 10
    reader = subscription.state
    while reader.channel is not None and reader.closed_by_server is None:
        assert time.monotonic() < deadline, "the reaper never read the channel's close"
        time.sleep(0.02)


class PausedReaper:
    """Stands in for the work function of ``broker``'s reaper (``Reaper._sweep``, which
    gives the thread its broker's sweep), so that a test can pause its sweeps: a paused
    reaper reads nothing from the connection, and so cannot be the one to read a close.
    """

    def __init__(self, broker: Any) -> None:
        self._real = broker._reaper._sweep
        self._running = threading.Lock()
        self._paused = False
        self.calls = 0
        broker._reaper._sweep = self
        # Once the thread asked this for a sweep, no sweep of its own is under way.
        deadline = time.monotonic() + 10
        while not self.calls:
            assert time.monotonic() < deadline, "the reaper never asked for a sweep"
            time.sleep(0.02)

    def __call__(self) -> Callable[[], None] | None:
        self.calls += 1
        real = self._real()
        if real is None:
            return None  # (its broker is gone)

        def sweep() -> None:
            with self._running:
                if not self._paused:
                    real()

        return sweep

    def pause(self) -> None:
        """Pause, once the sweep under way (if any) has ended."""
        self._paused = True
        with self._running:
            pass

    def resume(self) -> None:
        self._paused = False


@pytest.mark.parametrize(
    ("settle", "reader"),
    [
        ("extend", "reaper"),
        # (not ("extend", "settle"): an extend sends nothing, AMQP having no lease to
        # renew, so it finds the close only once it has arrived; an ack or nack makes
        # a round trip after its settle, which the close comes before)
        ("ack", "reaper"),
        ("ack", "settle"),
        ("nack", "reaper"),
        ("nack", "settle"),
    ],
)
def test_a_handler_past_consumer_timeout_loses_its_lease_once_and_the_subscription_goes_on(
    kombu_broker: Factory, lost_leases: LostLeases, settle: str, reader: str
) -> None:
    broker = kombu_broker(visibility_timeout=60)
    reaper = PausedReaper(broker)
    with broker.subscribe("slow", group="workers") as workers:
        broker.publish("slow", "long job")
        held = workers.receive(timeout=5)
        assert held is not None and held.attempt == 1
        if reader == "settle":
            reaper.pause()  # (so that the settle is the call that reads the close)
        close_its_channel(broker, workers)  # consumer_timeout, at once
        if reader == "reaper":
            _read_by_the_reaper(workers)
        else:  # (nothing read the connection since: the close waits on the socket)
            assert workers.state.closed_by_server is None
            assert workers.state.channel is not None
        settles = {
            "extend": lambda: held.extend(seconds=30),  # what the worker's renewal does
            "ack": held.ack,
            "nack": lambda: held.nack(requeue=True),
        }
        with pytest.raises(StaleDelivery) as raised:
            settles[settle]()
        assert "closed the channel" in str(raised.value), raised.value
        assert [d.id for d in lost_leases.lost] == [held.id]
        reaper.resume()
        again = workers.receive(timeout=5)  # over a new channel
        assert again is not None
        assert (again.id, again.body, again.attempt) == (held.id, "long job", 2)
        assert again.redelivered
        again.ack()
        broker.publish("slow", "next")
        after = workers.receive(timeout=5)
        assert after is not None and (after.body, after.attempt) == ("next", 1)
        after.ack()
    assert [d.id for d in lost_leases.lost] == [held.id], "reported more than once"
