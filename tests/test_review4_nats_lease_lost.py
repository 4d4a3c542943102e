"""NATS: a lease the background renewal finds lost is reported at once, as Redis's lease
keeper reports one: a warning on ``brokerkit.nats`` and ``brokerkit_on_lease_lost``,
with the delivery the application holds (under the sync API too), once: the settle that
then raises StaleDelivery does not report it again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import nats as nats_py
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.nats._wire import consumer_name
from tests.conftest import registered
from tests.nats_server import nats
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture


class LeaseRecorder:
    """Writes down each lost lease and each delivery's end, with the delivery itself."""

    def __init__(self) -> None:
        self.lost: list[Any] = []
        self.ends: list[tuple[Any, str]] = []

    @brokerkit.hookimpl
    def brokerkit_on_lease_lost(self, deliveries: Any) -> None:
        self.lost.extend(deliveries)

    @brokerkit.hookimpl
    def brokerkit_deliver_end(self, delivery: Any, outcome: str) -> None:
        self.ends.append((delivery, outcome))


@pytest.fixture
def recorder() -> Iterator[LeaseRecorder]:
    yield from registered(LeaseRecorder())


def _lost_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "brokerkit.nats" and "run out before they could be renewed" in r.message
    ]


def _delete_consumer(url: str, prefix: str, topic: str) -> None:
    """Delete the default group's consumer, as another program (or an operator) may."""

    async def delete() -> None:
        nc = await nats_py.connect(url)
        try:
            await nc.jetstream().delete_consumer(prefix, consumer_name(topic, "default"))
        finally:
            await nc.close()

    asyncio.run(delete())


def test_a_lease_run_out_while_the_loop_was_blocked_is_reported_once(
    nats_url: str, nats_prefix: str, recorder: LeaseRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> Any:
        url = f"{nats_url}?prefix={nats_prefix}&visibility_timeout=1"
        async with brokerkit.aio.connect(url) as broker:
            await broker.publish("jobs", b"x")
            async with await broker.subscribe("jobs") as sub:
                held = await sub.receive(timeout=10)
                assert held is not None
                time.sleep(1.5)  # the event loop blocked past the lease (a CPU-bound step)
                deadline = time.monotonic() + 15
                while not recorder.lost and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert recorder.lost, "the background renewal did not report the lost lease"
                with pytest.raises(brokerkit.StaleDelivery):
                    await held.ack()
                return held

    with caplog.at_level(logging.WARNING, logger="brokerkit.nats"):
        held = asyncio.run(main())
    assert len(recorder.lost) == 1 and recorder.lost[0] is held
    assert [(d is held, outcome) for d, outcome in recorder.ends] == [(True, "lease-lost")]
    assert len(_lost_warnings(caplog)) == 1


def test_a_lease_lost_with_its_consumer_is_reported_with_the_sync_delivery(
    nats: Callable[..., Any],
    nats_url: str,
    nats_prefix: str,
    recorder: LeaseRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = nats(visibility_timeout=1)
    broker.publish("jobs", b"x")
    with broker.subscribe("jobs") as sub, caplog.at_level(logging.WARNING, "brokerkit.nats"):
        held = sub.receive(timeout=10)
        assert held is not None
        _delete_consumer(nats_url, nats_prefix, "jobs")  # its renewal is answered 503
        wait_until(lambda: bool(recorder.lost), "the report of the lost lease", within=15.0)
        with pytest.raises(brokerkit.StaleDelivery):
            held.ack()
    assert len(recorder.lost) == 1
    assert recorder.lost[0] is held, "the hook was not given the sync API's delivery"
    assert [(d is held, outcome) for d, outcome in recorder.ends] == [(True, "lease-lost")]
    assert len(_lost_warnings(caplog)) == 1


def test_a_lease_lost_while_the_bridge_loop_was_blocked_is_reported_once(
    nats: Callable[..., Any], recorder: LeaseRecorder
) -> None:
    broker = nats(visibility_timeout=1)
    broker.publish_many("jobs", [b"a", b"b"])
    with broker.subscribe("jobs", prefetch=2) as sub:
        held = sub.receive(timeout=10)
        assert held is not None

        async def block() -> None:
            time.sleep(1.5)  # the bridge's event loop blocked past the lease

        broker._run(block())
        wait_until(lambda: len(recorder.lost) == 2, "the report of both lost leases", within=15.0)
        # The prefetched one, reported while buffered, is not reported again when the
        # application receives it and its settle is refused.
        buffered = sub.receive(timeout=0)
        assert buffered is not None and buffered.payload == b"b"
        with pytest.raises(brokerkit.StaleDelivery):
            held.nack()
        with pytest.raises(brokerkit.StaleDelivery):
            buffered.ack()
    assert len(recorder.lost) == 2
    assert {id(d) for d in recorder.lost} == {id(held), id(buffered)}
