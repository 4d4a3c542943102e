"""The relay's flags after the plugin that started an open delivery is unregistered:
they stay set while that delivery is open, and fall once it is gone, whether it was
settled or dropped unsettled by the application (let go once collected), and whatever
the order of the unregistration and the last settlement in two threads. A process
without message plugins pays one attribute read per message again."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit._hooks import RELAY, get_plugin_manager
from brokerkit.hookspecs import hookimpl


class EndsDeliveries:
    """A plugin that ends what it starts: it keeps the flags set after it is gone."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    @hookimpl
    def brokerkit_deliver_end(
        self, delivery: Any, outcome: str, error: Any, scope: dict[str, Any]
    ) -> None:
        self.ended.append(outcome)


def _flags() -> tuple[bool, bool, bool]:
    return RELAY.deliver, RELAY.settle, RELAY._draining


@pytest.fixture
def plugin() -> Iterator[EndsDeliveries]:
    """Registered; no other plugin implements a delivery hook in this process."""
    manager = get_plugin_manager()
    assert _flags() == (False, False, False), "another plugin implements a delivery hook"
    registered = EndsDeliveries()
    manager.register(registered)
    try:
        yield registered
    finally:
        if manager.is_registered(registered):
            manager.unregister(registered)
        gc.collect()
        with RELAY._registering:  # so that a failure here does not fail the next test
            RELAY._set_flags()


@pytest.fixture
def broker() -> Iterator[brokerkit.Broker]:
    with brokerkit.connect(f"memory://obs31c-{uuid.uuid4().hex}") as memory:
        yield memory


def test_the_flags_fall_at_the_next_delivery_once_the_open_one_was_dropped_unsettled(
    broker: brokerkit.Broker, plugin: EndsDeliveries
) -> None:
    with broker.subscribe("orders", group="g") as subscription:
        broker.publish("orders", 1)
        dropped = subscription.receive(5)
        assert dropped is not None
        get_plugin_manager().unregister(plugin)
        assert _flags() == (True, True, True)  # its delivery is still open
        del dropped  # unsettled
        gc.collect()
        assert len(RELAY._open) == 0
        broker.publish("orders", 2)
        later = subscription.receive(5)
        assert later is not None
        assert _flags() == (False, False, False)
        later.ack()
    assert plugin.ended == []


def test_the_flags_fall_at_a_settlement_once_the_open_one_was_dropped_unsettled(
    broker: brokerkit.Broker, plugin: EndsDeliveries
) -> None:
    with broker.subscribe("orders", group="g") as subscription:
        broker.publish("orders", 1)
        broker.publish("orders", 2)
        dropped = subscription.receive(5)
        assert dropped is not None
        get_plugin_manager().unregister(plugin)
        # received while the dropped one is open: the flags stay set
        later = subscription.receive(5)
        assert later is not None
        assert _flags() == (True, True, True)
        del dropped  # unsettled
        gc.collect()
        assert len(RELAY._open) == 0
        later.ack()
        assert _flags() == (False, False, False)
    assert plugin.ended == []


def test_the_last_settlement_during_an_unregistration_lets_the_flags_fall(
    broker: brokerkit.Broker, plugin: EndsDeliveries
) -> None:
    """The delivery is acked in another thread right after the unregistration's
    refresh counted it open (its first release of the end lock), and before the
    unregistration is over."""
    manager = get_plugin_manager()
    with broker.subscribe("orders", group="g") as subscription:
        broker.publish("orders", 1)
        delivery = subscription.receive(5)
        assert delivery is not None

        # set when the ack is done, or waits for the registration lock (held by the
        # unregistration until it is over)
        acked = threading.Event()
        problems: list[str] = []

        def ack() -> None:
            try:
                delivery.ack()
            finally:
                acked.set()

        acker = threading.Thread(target=ack)
        unregistering = threading.Thread(target=manager.unregister, args=(plugin,))
        real_end, real_registering = RELAY._end_lock, RELAY._registering

        class EndLock:
            fired = False

            def __enter__(self) -> bool:
                return real_end.__enter__()

            def __exit__(self, *exc: Any) -> None:
                real_end.__exit__(*exc)
                if not EndLock.fired and threading.current_thread() is unregistering:
                    EndLock.fired = True
                    acker.start()
                    if not acked.wait(30):
                        problems.append("the ack neither ended nor waited to refresh")

        class Registering:
            def __enter__(self) -> bool:
                if threading.current_thread() is acker:
                    acked.set()
                return real_registering.__enter__()

            def __exit__(self, *exc: Any) -> None:
                real_registering.__exit__(*exc)

        RELAY._end_lock = EndLock()  # type: ignore[assignment]
        RELAY._registering = Registering()  # type: ignore[assignment]
        try:
            unregistering.start()
            unregistering.join(30)
            acker.join(30)
        finally:
            RELAY._end_lock, RELAY._registering = real_end, real_registering
        assert not unregistering.is_alive() and not acker.is_alive()
        assert EndLock.fired and problems == []
    assert plugin.ended == ["ack"]
    assert len(RELAY._open) == 0
    assert _flags() == (False, False, False)
