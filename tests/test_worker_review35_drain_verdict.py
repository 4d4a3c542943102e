"""``worker.drained`` is set as soon as the drain knows it, before the drain waits for
the slots still ending their receives (review 35). The split of the drain out of the
worker (e909f41) set it only once the drain had returned: a slot held in its receive
kept ``drained`` False until the slot ended, so that
tests/test_worker_review26_stopping.py's grace=0 test, which lets the slot go once it
sees the verdict, passed only when its hook's 10 s guard ran out.

The drain's wait for the slots is seen where it looks at them (a runner's ``ended``,
which only that wait reads, observed and passed through), so that the order is made,
not waited for: when the drain first looks whether the slots have ended, ``drained``
is already True."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import brokerkit
from brokerkit.worker._runner import Runner
from tests.waiting import wait_until

#: Every wait of the test polls with this deadline; none is a sleep.
DEADLINE = 10.0
#: The hook's hang guard: longer than any wait of the test, so that only the test's
#: release ends the hold.
GUARD = 60.0


class _HeldReceive:
    """Holds the first delivery's receive in its slot, after the fetch and before the
    worker sees the delivery, until ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    @brokerkit.hookimpl
    def brokerkit_deliver_start(self, delivery: Any, scope: dict[str, Any]) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(GUARD)


def test_drained_is_true_before_the_drain_waits_for_a_slot_still_in_its_receive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked = threading.Event()  # the drain has looked whether the slots ended
    real_ended: property = Runner.__dict__["ended"]

    def ended(runner: Runner) -> bool:
        looked.set()
        return bool(real_ended.__get__(runner))

    monkeypatch.setattr(Runner, "ended", property(ended))
    plugin = _HeldReceive()
    manager = brokerkit.get_plugin_manager()
    manager.register(plugin)
    try:
        with brokerkit.connect("memory://") as broker:
            worker = brokerkit.Worker(broker, grace=0)

            @worker.handler("jobs")
            def job(body: Any) -> None:
                raise AssertionError("a delivery received during the drain is handed back")

            seen: list[tuple[bool, bool]] = []  # (drained, the slot still held)

            def release_when_the_drain_looks() -> None:
                try:
                    wait_until(looked.is_set, "the drain's look at its slots", within=DEADLINE)
                    seen.append((worker.drained, not plugin.release.is_set()))
                finally:
                    plugin.release.set()

            releaser = threading.Thread(target=release_when_the_drain_looks, daemon=True)
            broker.publish("jobs", {"n": 1})
            with worker.running():
                assert plugin.entered.wait(DEADLINE)
                releaser.start()
            releaser.join(DEADLINE)
            assert seen == [(True, True)], "drained is set before the drain waits for a slot"
            assert worker.drained
            assert broker.inspect("jobs").in_flight == 0  # handed back before run returned
    finally:
        manager.unregister(plugin)
