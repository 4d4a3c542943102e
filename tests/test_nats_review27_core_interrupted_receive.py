"""nats+core, sync API: Ctrl-C (a KeyboardInterrupt in the main thread) while a receive
waits for its fetch on the loop bridge loses nothing the fetch took (review 27, item 3).

Core NATS keeps nothing: what a subscription heard waits in its own buffer, and a
fetch takes it from there. The loop bridge now hands back what a fetch interrupted
by Ctrl-C brings (see tests/test_bridge_review27_interrupted_receive.py); the core
broker's hand-back let it go, so the message was lost though no caller ever had it.
It now goes back to the front of its subscription's buffer, and the subscription's
next receive gets it, before what came after it. (So does a receive cancelled under
the asyncio API.)

The fetch is held on the loop by a seam (:class:`HeldAsyncNatsCoreBroker`: the real
fetch has run, and taken the message, and is held before it returns until the test
lets it), so that the interrupt lands while it is under way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.aio import LoopBridgeBroker
from brokerkit.backends.nats.core import AsyncNatsCoreBroker
from tests.interrupting import Gate, HeldFetch, gated, interrupted_receive

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0


class HeldAsyncNatsCoreBroker(HeldFetch, AsyncNatsCoreBroker):
    """The core broker whose fetch passes the test's :class:`Gate` (if it set one)
    before it returns: a seam, the real fetch has run."""


@pytest.fixture
def core_url(nats_url: str) -> str:
    return nats_url.replace("nats://", "nats+core://", 1)


@pytest.fixture
def broker(core_url: str, nats_prefix: str) -> Iterator[LoopBridgeBroker]:
    bridged = brokerkit.aio.bridged(HeldAsyncNatsCoreBroker)
    with gated(bridged.from_url(core_url, prefix=nats_prefix)) as bridge:
        yield bridge


def test_the_next_receive_gets_what_an_interrupted_receive_took(
    broker: LoopBridgeBroker, interrupt_when: Callable[[threading.Event], None]
) -> None:
    subscription, gate = interrupted_receive(broker, broker, interrupt_when, topic="news")
    gate.open()
    broker.publish("news", "the next")
    first = subscription.receive(timeout=GUARD)
    assert first is not None and first.body == "the one", "the message taken was lost"
    second = subscription.receive(timeout=GUARD)
    assert second is not None and second.body == "the next"


def test_a_cancelled_asyncio_receive_loses_nothing(core_url: str, nats_prefix: str) -> None:
    async def main() -> None:
        broker = HeldAsyncNatsCoreBroker.from_url(core_url, prefix=nats_prefix)
        async with broker, await broker.subscribe("news") as subscription:
            await broker.publish("news", "the one")
            gate = broker.gate = Gate()
            receive = asyncio.ensure_future(subscription.receive(timeout=GUARD))
            assert await asyncio.to_thread(gate.entered.wait, GUARD)  # (its fetch took it)
            receive.cancel()
            gate.open()
            with pytest.raises(asyncio.CancelledError):
                await receive
            await broker.publish("news", "the next")
            first = await subscription.receive(timeout=GUARD)
            assert first is not None and first.body == "the one", "the message taken was lost"
            second = await subscription.receive(timeout=GUARD)
            assert second is not None and second.body == "the next"

    asyncio.run(main())
