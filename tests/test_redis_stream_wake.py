"""redis+stream: an entry handed back or requeued reaches a consumer already waiting
for the stream as a new entry does (the group's wake stream), against a real
redis-server."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import blocked_reads

Make = Callable[..., RedisStreamBroker]

#: A waiting consumer of the old design noticed an entry that came back only when
#: its blocking read ended: a whole fetch wait (``MAX_FETCH_WAIT``, one second) with
#: these options. Everything here must arrive well before that.
BEFORE_THE_OLD_READ_ENDED = 0.5
#: The waiter's options: no claim and no poll for held messages while it waits,
#: so only a wake-up can bring it what comes back.
WAITER = {"visibility_timeout": 30, "delay_poll_interval": 60}


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


class Waiter:
    """A subscription receiving (and acking) ``count`` deliveries in a thread; it
    has made its first fetch (and claim) before the thread starts, so the thread
    goes straight to a blocking read."""

    def __init__(self, subscription: brokerkit.Subscription, count: int) -> None:
        assert subscription.receive(timeout=0) is None  # the first fetch claims first
        self.got: list[brokerkit.Delivery] = []
        self.done = threading.Event()
        self._count = count
        self._subscription = subscription
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while len(self.got) < self._count:
                delivery = self._subscription.receive(timeout=10)
                if delivery is None:
                    return
                self.got.append(delivery)
                delivery.ack()
        finally:
            self.done.set()

    def join(self) -> None:
        self._thread.join(15)


@pytest.mark.parametrize("prefetch", [1, 10])
def test_entries_a_closing_consumer_hands_back_reach_a_waiting_consumer_at_once(
    make: Make, prefetch: int
) -> None:
    closing, waiting = make(), make(**WAITER)
    ids = closing.publish_many("jobs", [f"job {i}" for i in range(10)])
    holder = closing.subscribe("jobs", group="g", prefetch=10)
    kept = holder.receive(timeout=5)  # fetches all ten, hands one to the application
    assert kept is not None
    waiter = Waiter(waiting.subscribe("jobs", group="g", prefetch=prefetch), count=9)
    holder.close()  # hands the other nine back
    arrived = waiter.done.wait(BEFORE_THE_OLD_READ_ENDED)
    in_time = len(waiter.got)
    waiter.join()
    assert arrived, f"only {in_time} of 9 handed-back entries reached the waiter in time"
    assert sorted(d.id for d in waiter.got) == sorted(set(ids) - {kept.id})
    assert all(d.attempt == 1 for d in waiter.got), "a hand-back counts no attempt"
    kept.ack()


@pytest.mark.parametrize("resp", [{}, {"protocol": "3"}], ids=["resp2", "resp3"])
def test_a_requeued_entry_reaches_a_waiting_consumer_at_once(
    redis_target: RedisTarget, prefix: str, resp: dict[str, str]
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix, **resp)
    with brokerkit.connect(url) as worker, brokerkit.connect(url, **WAITER) as waiting:
        message_id = worker.publish("jobs", "retry me")
        delivery = worker.subscribe("jobs", group="g").receive(timeout=5)
        assert delivery is not None
        waiter = Waiter(waiting.subscribe("jobs", group="g"), count=1)
        delivery.nack(requeue=True)
        arrived = waiter.done.wait(BEFORE_THE_OLD_READ_ENDED)
        waiter.join()
        assert arrived, "the requeued entry did not reach the waiting consumer"
        assert [(d.id, d.attempt) for d in waiter.got] == [(message_id, 2)]


def test_a_wake_up_reaches_only_the_group_of_the_entry(
    make: Make, redis_client: redis.Redis
) -> None:
    worker, other = make(), make(**WAITER)
    worker.publish("jobs", "x")
    delivery = worker.subscribe("jobs", group="g").receive(timeout=5)
    assert delivery is not None
    bystander = other.subscribe("jobs", group="audit", prefetch=5)
    assert [d.body for d in [bystander.receive(timeout=5)] if d] == ["x"]
    delivery.nack(requeue=True)
    key = worker.stream_key("jobs")
    assert redis_client.xlen(key + ":wake:g") == 1
    assert redis_client.xlen(key + ":wake:audit") == 0


def test_wake_entries_are_acked_trimmed_and_their_reader_leaves_with_its_subscription(
    make: Make, redis_client: redis.Redis
) -> None:
    worker, waiting = make(), make(**WAITER)
    worker.publish_many("jobs", [f"job {i}" for i in range(40)])
    holder = worker.subscribe("jobs", group="g", prefetch=40)
    first = holder.receive(timeout=5)
    assert first is not None
    rest = [holder.receive(timeout=5) for _ in range(39)]
    subscription = waiting.subscribe("jobs", group="g", consumer="waiter", prefetch=40)
    waiter = Waiter(subscription, count=40)
    worker.nack(first, *[d for d in rest if d is not None], requeue=True)
    assert waiter.done.wait(15)
    waiter.join()
    assert len(waiter.got) == 40
    wake = worker.stream_key("jobs") + ":wake:g"
    assert redis_client.xlen(wake) <= 16, "the wake stream is trimmed as it grows"
    subscription.close()
    assert redis_client.xpending(wake, "g")["pending"] == 0, "every wake entry read is acked"
    names = [c["name"] for c in redis_client.xinfo_consumers(wake, "g")]
    assert b"waiter" not in names, "a closed subscription stays in the wake stream's group"


def test_a_requeue_never_makes_a_wake_stream_for_a_group_that_has_none(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs", group="g").receive(timeout=5)
    assert delivery is not None
    wake = broker.stream_key("jobs") + ":wake:g"
    redis_client.delete(wake)  # as under a consumer of an older brokerkit
    delivery.nack(requeue=True)
    assert not redis_client.exists(wake)


def test_deleting_a_group_deletes_its_wake_stream(make: Make, redis_client: redis.Redis) -> None:
    broker = make()
    broker.subscribe("jobs", group="g").close()
    wake = broker.stream_key("jobs") + ":wake:g"
    assert redis_client.exists(wake)
    assert broker.delete_group("jobs", "g")
    assert not redis_client.exists(wake)


@pytest.mark.parametrize("due", [True, False], ids=["held-message-due", "poll"])
def test_a_fetch_just_before_held_messages_are_looked_for_reads_what_is_there(
    make: Make, due: bool
) -> None:
    """Entries waiting in the stream are read at once, even when the next look for
    held messages comes within a server tick (it used to sleep that out first)."""
    broker = make(**WAITER)
    subscription = broker.subscribe("jobs", group="g")
    assert subscription.receive(timeout=0) is None  # the first fetch claims first
    message_id = broker.publish("jobs", "x")
    state = subscription.state
    state.release_at, state.release_due = time.monotonic() + 0.09, due
    got = broker._fetch(subscription, 1, 1.0)
    assert [d.id for d in got] == [message_id]
    broker.ack(*got)


def test_a_subscription_closing_while_it_still_holds_an_entry_acks_the_wake_entries_it_read(
    make: Make, redis_client: redis.Redis
) -> None:
    worker, other = make(), make(**WAITER)
    worker.publish_many("jobs", ["held", "requeued"])
    holder = other.subscribe("jobs", group="g", consumer="holder")
    held = holder.receive(timeout=5)  # still held when the subscription closes
    assert held is not None
    requeued = worker.subscribe("jobs", group="g").receive(timeout=5)
    assert requeued is not None
    requeued.nack(requeue=True)
    wake = worker.stream_key("jobs") + ":wake:g"
    # As its next blocking read would have, before any claim acked them.
    read = redis_client.xreadgroup("g", "holder", {wake: ">"})
    holder.state.woken = [entry_id.decode() for _, entries in read for entry_id, _ in entries]
    assert holder.state.woken
    holder.close()
    assert redis_client.xpending(wake, "g")["pending"] == 0
    held.ack()


def test_a_wake_stream_deleted_under_a_waiting_read_is_made_again(
    make: Make, redis_client: redis.Redis
) -> None:
    """Redis ends a read blocked on a key that is deleted with UNBLOCKED (as
    delete_group deletes the wake stream while members wait): the receive carries
    on, with its groups made again, instead of raising."""
    broker = make(**WAITER)
    subscription = broker.subscribe("jobs", group="g")
    assert subscription.receive(timeout=0) is None
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(subscription.receive(timeout=1.5)))
    reader.start()
    deadline = time.monotonic() + 5
    while not blocked_reads(redis_client):
        assert time.monotonic() < deadline, "the receive never blocked in XREADGROUP"
        time.sleep(0.01)  # polling with a deadline, not synchronisation
    assert redis_client.delete(subscription.state.wake_key) == 1
    reader.join(10)
    assert got == [None]
    broker.publish("jobs", "after")
    delivery = subscription.receive(timeout=5)
    assert delivery is not None and delivery.body == "after"
