"""A lease the worker holds that runs out all the same (thirty-second review of the
worker): the process stalled for longer than the visibility timeout (here a
ManualClock moved past it). The worker's renewal then finds it stale; it went on
asking to renew it at every round, three times per visibility timeout for as long as
the handler ran, and logged "could not renew waiting leases: ..." each time. Now it
says once that the lease ran out, and renews it no more (the others of the batch go on
being renewed), and a delivery that waited for a slot while its lease ran out is not
given to the handler: the message was back in line meanwhile, and comes again (the
handler ran it twice, its first run's ack failing)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import brokerkit
from tests.waiting import wait_until

DEADLINE = 10.0
TOPIC = "review32.lost"
#: Renewed every 0.1 s of real time.
VISIBILITY = 0.3


def test_a_lease_that_ran_out_is_told_once_and_renewed_no_more(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "brokerkit.worker")
    clock = brokerkit.ManualClock()
    release = threading.Event()
    attempts: list[int] = []
    with brokerkit.connect("memory://", clock=clock, visibility_timeout=VISIBILITY) as broker:
        renewals: list[list[Any]] = []
        extend = broker.extend

        def counted(*deliveries: Any, **options: Any) -> None:
            renewals.append(list(deliveries))
            extend(*deliveries, **options)

        monkeypatch.setattr(broker, "extend", counted)
        worker = brokerkit.Worker(broker, grace=DEADLINE)

        @worker.handler(TOPIC, concurrency=2, prefetch=0)
        def hold(body: int, delivery: brokerkit.Delivery) -> None:
            attempts.append(delivery.attempt)
            release.wait(DEADLINE)

        with worker.running(timeout=DEADLINE):
            broker.publish(TOPIC, 1)
            wait_until(lambda: attempts == [1], "the first delivery", within=DEADLINE)
            clock.advance(VISIBILITY * 10)  # a stall: the lease runs out meanwhile
            # the message comes again, to the other slot, whose lease is renewed
            wait_until(lambda: attempts == [1, 2], "the second delivery", within=DEADLINE)
            seen = len(renewals)
            wait_until(lambda: len(renewals) >= seen + 5, "five more renewals", within=DEADLINE)
            release.set()
    told = ("could not renew", "ran out while this worker held it")
    lost = [m for m in (r.getMessage() for r in caplog.records) if any(t in m for t in told)]
    assert len(lost) == 1, lost
    assert "ran out" in lost[0], lost[0]
    # the later rounds renewed the second delivery's lease alone
    assert all(len(batch) == 1 for batch in renewals[seen + 1 :]), renewals[seen + 1 :]


def test_a_waiting_delivery_whose_lease_ran_out_is_not_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "brokerkit.worker")
    clock = brokerkit.ManualClock()
    release = threading.Event()
    seen: list[tuple[int, int]] = []
    with brokerkit.connect("memory://", clock=clock, visibility_timeout=VISIBILITY) as broker:
        worker = brokerkit.Worker(broker, grace=DEADLINE)

        @worker.handler(TOPIC, concurrency=1, prefetch=1)
        def hold(body: int, delivery: brokerkit.Delivery) -> None:
            seen.append((body, delivery.attempt))
            if body == 1 and delivery.attempt == 1:
                release.wait(DEADLINE)

        with worker.running(timeout=DEADLINE):
            broker.publish_many(TOPIC, [1, 2])
            wait_until(lambda: seen == [(1, 1)], "the first delivery", within=DEADLINE)
            wait_until(lambda: worker.stats()[0].waiting == 1, "2 waiting", within=DEADLINE)
            clock.advance(VISIBILITY * 10)  # a stall: both leases run out meanwhile

            def told() -> int:
                return sum("ran out while" in r.getMessage() for r in caplog.records)

            wait_until(lambda: told() >= 1, "the lost leases told", within=DEADLINE)
            release.set()
            wait_until(lambda: len(seen) >= 3, "the messages again", within=DEADLINE)
    # 2 came once, with the attempt of its delivery after the lease ran out
    assert sorted(seen) == [(1, 1), (1, 2), (2, 2)], seen
