"""``stop(now=True)`` (or a second signal) ends the drain's wait for slots still ending
their receive (review 26b, item 4). With no handler running the drain is complete, and
then waited up to a minute for such slots, whatever ``grace`` and however the worker
was told to stop at once; docs/workers.md says that a second signal "ends the wait at
once"."""

from __future__ import annotations

import threading
from typing import Any

import brokerkit
from tests.test_worker_review26_stopping import _HeldReceive
from tests.waiting import wait_until

#: The hang guard of the held receive: longer than any wait of the test, so that only
#: the test's release ends it.
GUARD = 60.0


def test_stop_now_ends_the_wait_for_a_slot_ending_its_receive() -> None:
    plugin = _HeldReceive(GUARD)
    manager = brokerkit.get_plugin_manager()
    manager.register(plugin)
    try:
        with brokerkit.connect("memory://") as broker:
            worker = brokerkit.Worker(broker, grace=30)
            calls: list[Any] = []

            @worker.handler("jobs")
            def job(body: Any) -> None:
                calls.append(body)

            broker.publish("jobs", {"n": 1})
            run = threading.Thread(target=worker.run, name="test worker", daemon=True)
            run.start()
            try:
                assert plugin.entered.wait(GUARD)
                worker.stop()
                worker.stop(now=True)
                wait_until(lambda: not run.is_alive(), "run() to return after stop(now=True)")
            finally:
                plugin.release.set()
            assert worker.drained  # no handler was running
            # The slot, released, hands back what its receive brought: never handled,
            # its attempt not counted.
            wait_until(lambda: broker.inspect("jobs").in_flight == 0, "the hand-back")
            assert calls == []
            (again,) = list(broker.consume("jobs", timeout=0))
            assert again.body == {"n": 1} and again.attempt == 1
            again.ack()
    finally:
        manager.unregister(plugin)
