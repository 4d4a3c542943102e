"""The worker's lease renewal leaves out a delivery whose ack is in flight: the
renewal of the others stays one batched ``extend``, never one per delivery."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import brokerkit
from tests.test_worker import DEADLINE
from tests.waiting import wait_until


def test_an_ack_in_flight_leaves_the_renewal_batched() -> None:
    calls: list[tuple[int, bool]] = []  # (deliveries given, whether one was settling)
    extended_while_acking = threading.Event()
    acking = threading.Event()
    release = threading.Event()
    with brokerkit.connect(
        f"memory://heartbeat-{uuid.uuid4().hex}", visibility_timeout=0.3
    ) as broker:
        extend, ack = broker.extend, broker._ack

        def recording_extend(*deliveries: Any, **options: Any) -> None:
            settling = any(d._settled is not False for d in deliveries)
            calls.append((len(deliveries), settling))
            if acking.is_set():
                extended_while_acking.set()
            extend(*deliveries, **options)

        def gated_ack(deliveries: Any) -> None:
            # the first ack stays in flight until a renewal ran meanwhile
            if not acking.is_set():
                acking.set()
                assert extended_while_acking.wait(DEADLINE), "no renewal during the ack"
            ack(deliveries)

        broker.extend = recording_extend  # type: ignore[method-assign]
        broker._ack = gated_ack  # type: ignore[method-assign]
        worker = brokerkit.Worker(broker)
        done: list[int] = []

        @worker.handler("jobs", concurrency=3)
        def job(body: int) -> None:
            if body:  # held while the first one's ack is in flight
                release.wait(DEADLINE)
            done.append(body)

        broker.publish_many("jobs", [1, 2])
        with worker.running():
            wait_until(lambda: len(calls) > 0, "a renewal", within=DEADLINE)  # 1 and 2 held
            broker.publish("jobs", 0)
            wait_until(extended_while_acking.is_set, "a renewal during the ack", within=DEADLINE)
            release.set()
            wait_until(lambda: sorted(done) == [0, 1, 2], "jobs 0, 1 and 2 done", within=DEADLINE)
        assert broker.inspect("jobs").in_flight == 0
    assert extended_while_acking.is_set()
    assert [call for call in calls if call[1]] == [], "a settling delivery was extended"
    assert all(n >= 2 for n, _ in calls), f"a renewal went one delivery at a time: {calls}"
