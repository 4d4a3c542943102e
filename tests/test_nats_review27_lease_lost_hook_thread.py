"""NATS, sync API: the lease-loss hook of a lease the background renewals found lost
is called off the bridge's event loop (review 27).

The renewals run on the loop bridge's event loop, and told the hook there: a hook
that used the sync broker (published an alert, nacked another delivery) failed with
"a loop bridge called from its own loop", and one that blocked (an HTTP call) held up
every renewal of the broker meanwhile. A sync broker now tells the hook in a thread of
its own, as the bridge ends an interrupted ack's hooks, and as Redis's lease keeper
tells it from its own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import brokerkit
from tests.conftest import registered
from tests.nats_server import nats
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


class Alerting:
    """A lease-loss hook that publishes an alert through the sync broker."""

    def __init__(self) -> None:
        self.broker: brokerkit.Broker | None = None
        self.outcomes: list[object] = []
        self.threads: list[threading.Thread] = []

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.threads.append(threading.current_thread())
        assert self.broker is not None
        try:
            self.broker.publish("alerts", f"lost {len(deliveries)}")
        except Exception as exc:
            self.outcomes.append(exc)
        else:
            self.outcomes.append("published")


@pytest.fixture
def alerting() -> Iterator[Alerting]:
    yield from registered(Alerting())


def test_a_lease_loss_hook_may_use_the_sync_broker(
    nats: Callable[..., Any], alerting: Alerting
) -> None:
    broker = nats(visibility_timeout=1)
    alerting.broker = broker
    alerts = broker.subscribe("alerts")
    broker.publish("jobs", "x")
    with broker.subscribe("jobs") as subscription:
        held = subscription.receive(timeout=GUARD)
        assert held is not None

        async def block() -> None:
            time.sleep(1.5)  # the bridge's event loop blocked past the lease

        broker._run(block())
        wait_until(lambda: alerting.outcomes, "the lease-loss hook", within=GUARD)
    assert alerting.outcomes == ["published"]
    assert alerting.threads[0] is not broker._loop._thread, "told on the bridge's loop"
    alert = alerts.receive(timeout=GUARD)
    assert alert is not None and alert.body == "lost 1"
