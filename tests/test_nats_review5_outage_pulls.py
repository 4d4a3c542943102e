"""NATS: no pull is sent while the connection is down (review 5, finding 3).

nats-py buffers what is published while it reconnects and sends it once back: a
pull sent during an outage would lease messages into an inbox nobody waits on any
more, each then handed back with an attempt counted that no handler saw (with
``max_deliveries=1``, dead-lettered unseen). A receive during an outage waits for
the connection within its own timeout and returns nothing; once the connection is
back, every message comes on its first attempt.

The outage is a real one: :class:`~tests.test_nats_review5_late_settle.CutProxy`
drops the connection and refuses new ones until restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.nats_server import nats, nats_address
from tests.test_nats_review5_late_settle import CutProxy, disconnected
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture


@pytest.mark.parametrize("max_deliveries", [None, 1])
def test_receiving_through_an_outage_counts_no_attempt_and_keeps_its_timeout(
    nats: Callable[..., Any], nats_url: str, max_deliveries: int | None
) -> None:
    proxy = CutProxy(nats_address(nats_url))
    try:
        options = {} if max_deliveries is None else {"max_deliveries": max_deliveries}
        broker = nats(f"nats://127.0.0.1:{proxy.port}", visibility_timeout=30, **options)
        broker.publish_many("t", list(range(20)))
        subscription = broker.subscribe("t", group="g", prefetch=5)
        proxy.cut()
        wait_until(lambda: disconnected(broker), "the client seeing the cut", within=5)
        took = []
        for _ in range(4):
            started = time.monotonic()
            assert subscription.receive(timeout=0.5) is None
            took.append(time.monotonic() - started)
        # (it took 2.5 s: a pull's own wait, and the server's status it waited for)
        assert max(took) < 1.2, f"receive(timeout=0.5) took {max(took):.1f} s during an outage"
        proxy.restore()
        got: dict[int, int] = {}
        deadline = time.monotonic() + 15
        while len(got) < 20 and time.monotonic() < deadline:
            delivery = subscription.receive(timeout=1)
            if delivery is not None:
                got[delivery.body] = delivery.attempt
                delivery.ack()
        assert sorted(got) == list(range(20)), f"only {sorted(got)} came after the outage"
        counted = {body: attempt for body, attempt in got.items() if attempt != 1}
        assert not counted, (
            f"attempts counted for messages no handler saw (pulls sent during the outage): "
            f"{counted}"
        )
        assert broker.inspect("t.dlq").length == 0
    finally:
        proxy.close()
