"""The loop bridge, any backend: Ctrl-C (a KeyboardInterrupt in the main thread) while
a sync receive waits for its fetch on the bridge's loop strands nothing (review 27,
item 3).

The NATS broker's own fetch was made safe in review 26; the bridge's, which every
other plugin written for asyncio gets through :func:`brokerkit.aio.bridged`, was not:
the fetch went on on the loop and leased what it brought, and nobody held it. The
message stayed leased until its visibility timeout ran out (or for good on a backend
that renews what its broker holds), and the subscription's next receive did not get
it. Now the fetch goes on and what it brings is handed back as soon as it ends; the
subscription's next receive, and its close, wait for that first.

The backend here is the memory backend's asyncio class under the bridge, its fetch
held by a seam (:class:`HeldAsyncMemoryBroker`: the real fetch has run, and leased the
message, and is held before it returns until the test lets it), so that the
interrupt lands while it is under way.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.aio import LoopBridgeBroker
from brokerkit.backends.memory import AsyncMemoryBroker
from tests.interrupting import HeldFetch, gated, interrupted_receive

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 30.0
#: Long enough that a message comes back within a test only if it was handed back.
_VISIBILITY = 600


class HeldAsyncMemoryBroker(HeldFetch, AsyncMemoryBroker):
    """The memory backend's asyncio class whose fetch passes the test's :class:`Gate`
    (if it set one) before it returns: a seam, the real fetch has run."""


@pytest.fixture
def url() -> str:
    return f"memory://bridge-review27-{uuid.uuid4().hex}"


@pytest.fixture
def observer(url: str) -> Iterator[brokerkit.Broker]:
    """A plain memory broker on the store the bridge uses, which keeps it alive."""
    with brokerkit.connect(url, visibility_timeout=_VISIBILITY) as other:
        yield other


@pytest.fixture
def broker(url: str, observer: brokerkit.Broker) -> Iterator[LoopBridgeBroker]:
    bridged = brokerkit.aio.bridged(HeldAsyncMemoryBroker)
    with gated(bridged.from_url(url, visibility_timeout=_VISIBILITY)) as bridge:
        yield bridge


def _interrupted_receive(
    broker: LoopBridgeBroker,
    observer: brokerkit.Broker,
    interrupt_when: Callable[[threading.Event], None],
) -> brokerkit.Subscription:
    """A subscription whose receive was interrupted while its fetch, which leased a
    message, was held; the fetch then let go."""
    subscription, gate = interrupted_receive(broker, observer, interrupt_when, group="g")
    assert observer.inspect("jobs").in_flight == 1  # (leased by the fetch)
    gate.open()
    return subscription


def test_the_next_receive_gets_what_an_interrupted_receive_fetched(
    broker: LoopBridgeBroker,
    observer: brokerkit.Broker,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    subscription = _interrupted_receive(broker, observer, interrupt_when)
    delivery = subscription.receive(timeout=GUARD)
    assert delivery is not None, "the message an interrupted receive fetched was stranded"
    assert delivery.body == "the one"
    delivery.ack()
    assert subscription.receive(timeout=0) is None  # (not twice)
    info = observer.inspect("jobs")
    assert (info.in_flight, info.groups[0].lag) == (0, 0)


def test_another_consumer_gets_what_an_interrupted_receive_fetched_at_once(
    broker: LoopBridgeBroker,
    observer: brokerkit.Broker,
    interrupt_when: Callable[[threading.Event], None],
) -> None:
    subscription = _interrupted_receive(broker, observer, interrupt_when)
    subscription.close()  # (waits for the fetch left running, and its hand-back)
    assert observer.inspect("jobs").in_flight == 0
    delivery = observer.subscribe("jobs", group="g").receive(timeout=0)
    assert delivery is not None, "the message an interrupted receive fetched was stranded"
    assert delivery.body == "the one"
    delivery.ack()
