"""An asyncio worker's hard stop while its ack runs in the thread adapter's worker
thread (kombu's asyncio side): the ack goes on in its thread, and the delivery reads as
being settled until it ends (tests/test_threaded_cancelled_settle.py). The cancelled
slot must leave it to that ack: a nack of its own would be refused (AlreadySettled),
logged as a failure, and would end the delivery's hooks "unsettled" although the
message was acked."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from tests.test_threaded_cancelled_settle import (
    GUARD,
    Backend,
    Recorder,
    _topic,
    backend,
    rabbitmq,
    recorder,
)

__all__ = ["backend", "rabbitmq", "recorder"]  # fixtures


def test_a_hard_stop_during_an_ack_in_a_thread_leaves_the_ack_to_settle_it(
    backend: Backend, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    gate = backend.gate
    handled = threading.Event()

    async def main() -> None:
        async with backend.opened() as broker:
            topic = _topic()
            worker = brokerkit.aio.Worker(broker, grace=0)

            @worker.handler(topic)
            async def job(body: Any) -> None:
                handled.set()

            await broker.publish(topic, b"x")
            run = asyncio.ensure_future(worker.run())
            # the handler returned, and the worker's ack is inside its thread
            assert await asyncio.to_thread(gate.entered.wait, GUARD)
            worker.stop(now=True)  # the slot is cancelled while the thread acks
            await asyncio.wait_for(run, GUARD)
            gate.release.set()
            assert await asyncio.to_thread(recorder.ended.wait, GUARD)
            assert (await broker.inspect(topic)).in_flight == 0

    with caplog.at_level(logging.INFO, logger="brokerkit"):
        asyncio.run(main())
    assert handled.is_set()
    assert [c for c in recorder.calls if c[0] == "deliver_end"] == [("deliver_end", "ack")]
    assert not [r for r in caplog.records if "could not" in r.getMessage()]
