"""Every ``kombu+memory://`` broker of a process shares kombu's one in-memory store,
which is not thread-safe: two brokers declaring the same exchange or queue at once
could replace each other's routing table or queue (a binding kombu still records, so
nothing rebinds, and later publishes to the topic vanished), and a purge could clear
a message another broker published without counting it. The brokers of the process
serialise their use of that store on one lock; these tests race brokers against each
other in threads, with the interpreter switching threads as often as it can."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu.transport.memory import Channel as MemoryChannel
from kombu.transport.memory import Transport as MemoryTransport

import brokerkit
import brokerkit.aio

#: Rounds of the declaration race (three brokers publish to a new topic while a
#: fourth subscribes to it): before the fix, about one round in five lost a message
#: (through brokerkit.aio, one in twenty).
ROUNDS = 1000
ASYNC_ROUNDS = 500

#: Races of a purge against a publisher, and the messages each publishes: before the
#: fix, most races left a few hundred purged messages uncounted.
PURGE_RACES = 3
PURGE_MESSAGES = 10_000

#: The longest a thread waits at a barrier (a test that hangs fails instead).
WAIT = 30.0


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Let the interpreter switch threads as often as it can (races show up)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class MemoryBrokers:
    """Brokers on ``kombu+memory://`` under one test's own prefix."""

    def __init__(self) -> None:
        self.prefix = f"bkt-{uuid.uuid4().hex[:12]}"
        self.url = f"kombu+memory://?prefix={self.prefix}"
        #: The sync brokers made (an asyncio broker's thread adapter's sync broker).
        self.made: list[Any] = []

    def connect(self) -> brokerkit.Broker:
        broker = brokerkit.connect(self.url)
        self.made.append(broker)
        return broker

    async def connect_aio(self) -> brokerkit.aio.AsyncBroker:
        broker = await brokerkit.aio.connect(self.url)
        self.made.append(broker.sync)  # type: ignore[attr-defined]
        return broker

    def clean_up(self) -> None:
        """Close the brokers; delete every exchange and queue they declared."""
        exchanges: set[str] = set()
        queues: set[str] = set()
        for broker in self.made:
            if not broker.closed:
                broker.close()
            exchanges.update(broker.declared[0])
            queues.update(broker.declared[1])
        with brokerkit.connect(self.url) as cleaner:
            cleaner.delete(frozenset(exchanges), frozenset(queues))  # type: ignore[attr-defined]
        assert [q for q in MemoryChannel.queues if self.prefix in q] == []
        assert [e for e in MemoryTransport.global_state.exchanges or {} if self.prefix in e] == []


@pytest.fixture
def brokers() -> Iterator[MemoryBrokers]:
    made = MemoryBrokers()
    yield made
    made.clean_up()


def _in_threads(*bodies: Callable[[], None]) -> None:
    """Run each body in a thread of its own; re-raise the first error."""
    errors: list[BaseException] = []

    def run(body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as error:  # reported to the test below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(t.is_alive() for t in threads), "a racing thread hung"
    if errors:
        raise errors[0]


@pytest.mark.usefixtures("switch_often")
def test_brokers_declaring_a_topic_at_once_lose_no_message(
    brokers: MemoryBrokers,
) -> None:
    """Three brokers publish to a new topic while a fourth subscribes to it: every
    message waits for the subscriber, and so does every later publish to the topic,
    from any broker of the process."""
    url, connect = brokers.url, brokers.connect
    publishers = [connect() for _ in range(3)]
    subscriber = connect()
    start = threading.Barrier(len(publishers) + 1, timeout=WAIT)
    subscriptions: dict[int, brokerkit.Subscription] = {}

    def publish(broker: brokerkit.Broker, n: int) -> Callable[[], None]:
        def body() -> None:
            for i in range(ROUNDS):
                start.wait()
                broker.publish(f"t{i}", n)

        return body

    def subscribe() -> None:
        for i in range(ROUNDS):
            start.wait()
            subscriptions[i] = subscriber.subscribe(f"t{i}")

    _in_threads(*(publish(b, n) for n, b in enumerate(publishers)), subscribe)
    sys.setswitchinterval(0.005)  # the race is over: read back at normal speed

    lost = [i for i in range(ROUNDS) if sorted(_drain(subscriptions[i])) != [0, 1, 2]]
    # A later publish, from a broker that took no part in the race, still arrives.
    with brokerkit.connect(url) as later:
        for i in range(ROUNDS):
            later.publish(f"t{i}", "later")
    missed = [i for i in range(ROUNDS) if _drain(subscriptions[i]) != ["later"]]
    for subscription in subscriptions.values():
        subscription.close()
    assert (lost, missed) == ([], []), (
        f"{len(lost)} of {ROUNDS} rounds lost a message; "
        f"{len(missed)} of {ROUNDS} topics route nothing any more"
    )


def _drain(subscription: brokerkit.Subscription) -> list[Any]:
    """The bodies of every message waiting for ``subscription``."""
    bodies = []
    while (delivery := subscription.receive(timeout=0)) is not None:
        bodies.append(delivery.body)
    return bodies


@pytest.mark.usefixtures("switch_often")
def test_a_purge_counts_every_message_it_removes(
    brokers: MemoryBrokers,
) -> None:
    """One broker purges a topic while another publishes to it: every message
    published was either purged (and counted) or is still there."""
    connect = brokers.connect
    publisher, purger = connect(), connect()
    for race in range(PURGE_RACES):
        topic = f"t{race}"
        publisher.publish(topic, 0)  # the topic exists before the race
        done = threading.Event()
        purged = 0

        def publish(topic: str = topic, done: threading.Event = done) -> None:
            try:
                for k in range(1, PURGE_MESSAGES):
                    publisher.publish(topic, k)
            finally:
                done.set()

        def purge(topic: str = topic, done: threading.Event = done) -> None:
            nonlocal purged
            while not done.is_set():
                purged += purger.purge(topic)

        _in_threads(publish, purge)
        left = purger.inspect(topic).length
        assert purged + left == PURGE_MESSAGES, f"race {race}: purged {purged}, {left} left"


@pytest.mark.usefixtures("switch_often")
def test_asyncio_brokers_declaring_a_topic_at_once_lose_no_message(
    brokers: MemoryBrokers,
) -> None:
    """The same race through brokerkit.aio (kombu under the thread adapter, whose
    worker threads run the sync broker's calls): three asyncio brokers publish to
    new topics while a fourth subscribes to them."""

    async def race() -> list[int]:
        publishers = [await brokers.connect_aio() for _ in range(3)]
        subscriber = await brokers.connect_aio()

        async def round_(i: int) -> brokerkit.aio.AsyncSubscription:
            *_, subscription = await asyncio.gather(
                *(p.publish(f"t{i}", n) for n, p in enumerate(publishers)),
                subscriber.subscribe(f"t{i}"),
            )
            assert isinstance(subscription, brokerkit.aio.AsyncSubscription)
            return subscription

        subscriptions = await asyncio.gather(*(round_(i) for i in range(ASYNC_ROUNDS)))
        lost = []
        for i, subscription in enumerate(subscriptions):
            bodies = []
            while (delivery := await subscription.receive(timeout=0)) is not None:
                bodies.append(delivery.body)
            if sorted(bodies) != [0, 1, 2]:
                lost.append(i)
            await subscription.close()
        for broker in (*publishers, subscriber):
            await broker.close()
        return lost

    lost = asyncio.run(race())
    assert lost == [], f"{len(lost)} of {ASYNC_ROUNDS} rounds lost a message"


def test_a_consumer_waiting_on_an_empty_queue_holds_up_no_other_broker(
    brokers: MemoryBrokers,
) -> None:
    """Waiting for a message happens outside the process-wide lock: while one
    broker's consumer waits, other brokers publish and read at once."""
    connect = brokers.connect
    waiting, other = connect(), connect()
    with waiting.subscribe("idle") as idle, other.subscribe("busy") as busy:
        received: list[Any] = []
        blocked = threading.Thread(target=lambda: received.append(idle.receive(timeout=3)))
        blocked.start()
        try:
            for k in range(200):
                other.publish("busy", k)
                got = busy.receive(timeout=1)
                assert got is not None and got.body == k
            assert blocked.is_alive(), "the other broker worked while the consumer waited"
        finally:
            waiting.publish("idle", "wake")
            blocked.join(WAIT)
    assert [d.body for d in received] == ["wake"]
