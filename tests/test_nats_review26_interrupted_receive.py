"""NATS, sync API: Ctrl-C (a KeyboardInterrupt in the main thread) while a receive
waits for its fetch on the loop bridge strands nothing (review 26, bug 1).

The fetch goes on on the bridge's loop (cut off half-way, it could leave messages
leased that nobody holds): what it brings is handed back as soon as it ends, so that
the group gets it again at once; the subscription's next receive waits for that
first, and gets the message; its close does too. The message used to stay leased,
renewed in the background for as long as the broker was open, the subscription's
close included.

The fetch is held on the loop by a seam (:class:`HeldAsyncNatsBroker`: the real fetch
has run, and leased the message, and is held before it returns until the test lets
it), so that the interrupt lands while it is under way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

import brokerkit
from brokerkit.backends.nats.broker import AsyncNatsBroker
from brokerkit.backends.nats.sync import NatsBroker
from tests.interrupting import HeldFetch, gated, interrupted_receive
from tests.waiting import wait_until

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0
#: Long enough that a message comes back within a test only if it was handed back.
_VISIBILITY = 60


class HeldAsyncNatsBroker(HeldFetch, AsyncNatsBroker):
    """The asyncio NATS broker whose fetch passes the test's :class:`Gate` (if it set
    one) before it returns: a seam, the real fetch has run."""


class HeldNatsBroker(NatsBroker):
    async_class = HeldAsyncNatsBroker


@pytest.fixture
def broker(nats_url: str, nats_prefix: str) -> Iterator[HeldNatsBroker]:
    with gated(
        HeldNatsBroker.from_url(nats_url, prefix=nats_prefix, visibility_timeout=_VISIBILITY)
    ) as held:
        yield held


def _interrupted_receive(
    broker: HeldNatsBroker,
    publisher: brokerkit.Broker,
    interrupt_when: Callable[[threading.Event], None],
) -> brokerkit.Subscription:
    """A subscription whose receive was interrupted while its fetch, which leased a
    message, was held; the fetch then let go."""
    subscription, gate = interrupted_receive(broker, publisher, interrupt_when, group="g")
    assert broker._nats._leases  # (leased by the fetch)
    gate.open()
    return subscription


def test_the_next_receive_gets_what_an_interrupted_receive_fetched(
    broker: HeldNatsBroker,
    nats_url: str,
    nats_prefix: str,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as publisher:
        subscription = _interrupted_receive(broker, publisher, interrupt_when)
        delivery = subscription.receive(timeout=GUARD)
        assert delivery is not None, "the message an interrupted receive fetched was stranded"
        assert delivery.body == "the one"
        delivery.ack()
        assert subscription.receive(timeout=0) is None  # (not twice)
        wait_until(lambda: not broker._nats._leases, "the leases let go")
        info = publisher.inspect("jobs").groups[0]
        assert (info.lag, info.pending) == (0, 0)


def test_another_consumer_gets_what_an_interrupted_receive_fetched_at_once(
    broker: HeldNatsBroker,
    nats_url: str,
    nats_prefix: str,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    with brokerkit.connect(nats_url, prefix=nats_prefix) as other:
        subscription = _interrupted_receive(broker, other, interrupt_when)
        subscription.close()  # (waits for the fetch left running, and its hand-back)
        # None kept (renewed) by the broker, still open:
        wait_until(lambda: not broker._nats._leases, "the leases let go")
        delivery = other.subscribe("jobs", group="g").receive(timeout=GUARD)
        assert delivery is not None, "the message an interrupted receive fetched was stranded"
        assert delivery.body == "the one"
        delivery.ack()
