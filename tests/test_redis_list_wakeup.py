"""redis+list hands a woken consumer what it waited for as soon as its BLMOVE returns,
and writes its lease before anything touches it. And a message nacked or handed back
reaches a consumer already waiting at once, not at its next poll."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.list import RedisListBroker
from brokerkit.backends.redis.list.options import RedisListOptions
from tests.conftest import RedisTarget
from tests.redis_server import RedisServer

#: Shorter than every interval at which a redis+list consumer looks again on its own
#: (delay_poll_interval 0.5 s, a fetch's longest block 1 s, rescues every half a
#: visibility timeout): a message that comes within it came through the wake-up.
PROMPT = 0.4


@pytest.fixture
def connect(
    redis_broker: Callable[..., Any], redis_target: RedisTarget, prefix: str
) -> Iterator[Callable[..., RedisListBroker]]:
    """``connect(name=None) -> RedisListBroker`` under this test's prefix, its connections
    named ``name``; all closed after."""
    made: list[RedisListBroker] = []

    def factory(name: str | None = None) -> RedisListBroker:
        if name is None:
            return redis_broker("redis+list")  # type: ignore[no-any-return]
        url = redis_target.url("redis+list", client_name=name)
        broker = brokerkit.connect(url, prefix=prefix)
        made.append(broker)  # type: ignore[arg-type]
        return broker  # type: ignore[return-value]

    yield factory
    for broker in made:
        broker.close()


def blocked(admin: redis.Redis, name: str) -> dict[str, Any]:
    """The connection named ``name`` once it waits in BLMOVE (polled, 10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        for client in admin.client_list():
            if client.get("name") == name and client.get("cmd") == "blmove":
                return client
        assert time.monotonic() < deadline, f"{name} never waited in BLMOVE"
        time.sleep(0.005)


class Waiting:
    """``subscription.receive(timeout)`` in a thread, started now."""

    def __init__(self, subscription: Any, timeout: float) -> None:
        self.got: list[Any] = []
        self._thread = threading.Thread(
            target=lambda: self.got.append(subscription.receive(timeout=timeout))
        )
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(10)
        assert self.got, "receive never returned"
        return self.got[0]


@contextlib.contextmanager
def producer_and_waiter(
    redis_server: RedisServer, prefetch: int = 1, **options: Any
) -> Iterator[tuple[brokerkit.Broker, brokerkit.Broker, Any]]:
    """A producer and a consumer on ``redis_server`` (the consumer's connections named
    "waiter", its ``options`` given), and the consumer's subscription to "orders",
    past its first fetch's housekeeping."""
    url = redis_server.url("redis+list")
    with (
        brokerkit.connect(url) as producer,
        brokerkit.connect(url + "?client_name=waiter", **options) as consumer,
    ):
        subscription = consumer.subscribe("orders", prefetch=prefetch)
        subscription.receive(timeout=0)
        yield producer, consumer, subscription


def waiting_in_blmove(subscription: Any, admin: redis.Redis) -> Waiting:
    """A receive of up to 5 s in a thread, once the "waiter" waits in BLMOVE."""
    waiting = Waiting(subscription, 5)
    blocked(admin, "waiter")
    return waiting


def test_a_woken_consumer_hands_out_what_it_waited_for_before_the_lease_reply(
    redis_server: RedisServer,
) -> None:
    """The wake-up reads the BLMOVE's reply alone, sends the call that leases the
    element and hands it out at once; the call's reply is read before the delivery is
    settled (see brokerkit/backends/redis/list/woken_async.py)."""
    admin = redis_server.client()
    with producer_and_waiter(redis_server) as (producer, consumer, subscription):
        waiting = Waiting(subscription, 5)
        client = blocked(admin, "waiter")
        assert int(client["qbuf"]) == 0  # nothing waits behind the BLMOVE
        producer.publish("orders", "hello")
        delivery = waiting.result()
        assert delivery is not None and delivery.body == "hello" and delivery.attempt == 1
        assert subscription.state.pending is not None  # its lease's reply is not read yet
        delivery.ack()
        assert subscription.state.pending is None
        info = consumer.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
        assert all(admin.llen(key) == 0 for key in info.details["processing_keys"])


def _nonce(receipt: str) -> str:
    """The batch a receipt (``<nonce><i>:<consumer>``) names (small bodies: one batch a
    fetch)."""
    return receipt[: receipt.index("-") + 1]


@pytest.mark.parametrize("forgotten", [False, True], ids=["loaded", "noscript"])
def test_a_burst_that_wakes_a_consumer_is_leased_by_its_one_call(
    redis_server: RedisServer, forgotten: bool
) -> None:
    """Five messages wake a consumer with prefetch 10: the first goes out at once, and
    the same call leases the four behind it, which the next receives take without
    another fetch (their receipts name that call's batch). With the script forgotten
    (NOSCRIPT), the call runs again and reads them apart."""
    admin = redis_server.client()
    with producer_and_waiter(redis_server, prefetch=10) as (producer, consumer, subscription):
        waiting = waiting_in_blmove(subscription, admin)
        if forgotten:
            admin.script_flush()
        producer.publish_many("orders", range(5))
        first = waiting.result()
        assert first is not None and first.body == 0
        rest = [subscription.receive(timeout=0) for _ in range(4)]
        assert [d.body for d in rest if d is not None] == [1, 2, 3, 4]
        assert {_nonce(d.receipt) for d in (first, *rest) if d is not None} == {
            _nonce(first.receipt)
        }
        consumer.ack(first, *rest)  # type: ignore[arg-type]
        info = consumer.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)


def test_the_lease_keeper_reading_a_woken_calls_replies_keeps_the_rest_for_the_next_fetch(
    redis_server: RedisServer,
) -> None:
    """The lease keeper's renewal (a thread of its own) reads the woken call's replies
    first: the four leased behind the delivery handed out are renewed from then on and
    come with the next receives, in order, without another fetch."""
    admin = redis_server.client()
    with producer_and_waiter(redis_server, prefetch=10, visibility_timeout=1) as (
        producer,
        consumer,
        subscription,
    ):
        waiting = waiting_in_blmove(subscription, admin)
        producer.publish_many("orders", range(5))
        first = waiting.result()
        assert first is not None and first.body == 0
        deadline = time.monotonic() + 10
        while subscription.state.pending is not None:  # a renewal every third of a second
            assert time.monotonic() < deadline, "no renewal read the call's replies"
            time.sleep(0.01)
        assert len(subscription.state.early) == 4
        rest = [subscription.receive(timeout=0) for _ in range(4)]
        assert [d.body for d in rest if d is not None] == [1, 2, 3, 4]
        assert {_nonce(d.receipt) for d in rest if d is not None} == {_nonce(first.receipt)}
        consumer.ack(first, *rest)  # type: ignore[arg-type]
        assert consumer.inspect("orders").in_flight == 0


def test_what_a_woken_call_leased_behind_goes_back_when_the_consumer_closes(
    redis_server: RedisServer,
) -> None:
    """The deliveries a woken consumer's call leased behind the one it handed out, never
    returned by a receive, go back at close like buffered ones."""
    admin = redis_server.client()
    with producer_and_waiter(redis_server, prefetch=10) as (producer, consumer, subscription):
        waiting = waiting_in_blmove(subscription, admin)
        producer.publish_many("orders", range(5))
        first = waiting.result()
        assert first is not None and first.body == 0
        first.ack()  # reads the call's replies: four leased behind it
        assert consumer.inspect("orders").in_flight == 4
        subscription.close()
        info = consumer.inspect("orders")
        assert (info.length, info.in_flight) == (4, 0)
        back = producer.subscribe("orders", prefetch=10)
        got = [back.receive(timeout=5) for _ in range(4)]
        assert [d.body for d in got if d is not None] == [1, 2, 3, 4]
        producer.ack(*got)  # type: ignore[arg-type]


def test_a_woken_delivery_whose_element_was_taken_back_leases_nothing_in_its_place(
    redis_server: RedisServer,
) -> None:
    """The element a woken consumer handed out is gone from its processing list when the
    lease call runs (a rescuer took the consumer for dead; here its call hit NOSCRIPT
    and runs again later, after the element went back): the call leases nothing,
    not another message under the receipt handed out, and the ack is stale."""
    admin = redis_server.client()
    with producer_and_waiter(redis_server, prefetch=10) as (producer, consumer, subscription):
        waiting = waiting_in_blmove(subscription, admin)
        admin.script_flush()
        producer.publish("orders", "hello")
        delivery = waiting.result()
        assert delivery is not None and delivery.body == "hello"
        details = consumer.inspect("orders").details
        (processing,) = details["processing_keys"]
        assert admin.lmove(processing, details["queue_key"], "RIGHT", "RIGHT") is not None
        producer.publish("orders", "other")
        with pytest.raises(brokerkit.StaleDelivery):
            delivery.ack()
        info = consumer.inspect("orders")
        assert (info.length, info.in_flight) == (2, 0)
        got = [subscription.receive(timeout=5) for _ in range(2)]
        assert sorted(d.body for d in got if d is not None) == ["hello", "other"]
        consumer.ack(*got)  # type: ignore[arg-type]


FIRST_STEPS = ["ack", "nack", "extend", "next wake-up", "close", "renewal"]


@pytest.mark.parametrize("first", FIRST_STEPS)
def test_the_lease_of_a_woken_delivery_is_written_before_anything_touches_it(
    redis_server: RedisServer, first: str
) -> None:
    """The call that leases a woken delivery fails (the server forgot the script, as
    after a restart: NOSCRIPT). Whatever comes first (settling or extending the
    delivery, the lease keeper's renewal, the consumer's next wake-up, its close) reads
    that reply and runs the call again before it goes on: the lease is written, the
    delivery never reported stale, no element left in the processing list."""
    admin = redis_server.client()
    timeout = 1.0 if first == "renewal" else 30.0  # a renewal every third of it
    with producer_and_waiter(redis_server, visibility_timeout=timeout) as (
        producer,
        consumer,
        subscription,
    ):
        waiting = waiting_in_blmove(subscription, admin)
        admin.script_flush()
        producer.publish("orders", "hello")
        delivery = waiting.result()
        assert delivery is not None and delivery.body == "hello"
        assert subscription.state.pending is not None
        processing = consumer.inspect("orders").details["processing_keys"]
        if first == "ack":
            delivery.ack()
        elif first == "nack":
            delivery.nack()
            again = subscription.receive(timeout=5)
            assert again is not None and again.body == "hello" and again.attempt == 2
            again.ack()
        elif first == "extend":
            delivery.extend(60)
            assert consumer.inspect("orders").in_flight == 1
            delivery.ack()
        elif first == "next wake-up":
            # the next fetch moves another element to the tail of the processing list,
            # where the call run again looks
            assert subscription.receive(timeout=0) is None
            waiting = Waiting(subscription, 5)
            blocked(admin, "waiter")
            producer.publish("orders", "second")
            second = waiting.result()
            assert second is not None and second.body == "second"
            consumer.ack(delivery, second)
        elif first == "close":
            subscription.close()  # a delivery returned keeps its lease
            info = consumer.inspect("orders")
            assert (info.length, info.in_flight) == (0, 1)
            assert all(admin.llen(key) == 0 for key in processing)
            delivery.ack()
        else:  # the lease keeper's beat
            deadline = time.monotonic() + 10
            while subscription.state.pending is not None:
                assert time.monotonic() < deadline, "no renewal read the lease's reply"
                time.sleep(0.01)
            assert consumer.inspect("orders").in_flight == 1
            delivery.ack()
        info = consumer.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
        assert all(admin.llen(key) == 0 for key in processing)


def test_a_raw_element_a_woken_consumer_gets_carries_its_count(
    redis_server: RedisServer,
) -> None:
    """A raw element (no brokerkit envelope) keeps its count of deliveries in the
    server, which the lease call's reply gives: a woken consumer waits for that reply
    before it hands one out."""
    admin = redis_server.client()
    with producer_and_waiter(redis_server) as (holder, _consumer, subscription):
        admin.lpush(holder.inspect("orders").details["queue_key"], b"plain bytes")
        held = holder.subscribe("orders").receive(timeout=5)
        assert held is not None and held.payload == b"plain bytes" and held.attempt == 1
        waiting = waiting_in_blmove(subscription, admin)
        held.nack()  # back to the queue, its count kept in the server
        delivery = waiting.result()
        assert delivery is not None and delivery.payload == b"plain bytes"
        assert delivery.attempt == 2
        assert subscription.state.pending is None
        delivery.ack()


def test_a_lease_script_the_server_forgot_is_loaded_and_leases_what_the_blmove_moved(
    redis_server: RedisServer,
) -> None:
    admin = redis_server.client()
    with producer_and_waiter(redis_server) as (producer, consumer, subscription):
        waiting = waiting_in_blmove(subscription, admin)
        admin.script_flush()  # the pipelined EVALSHA will find no script
        producer.publish("orders", "hello")
        delivery = waiting.result()
        assert delivery is not None and delivery.body == "hello" and delivery.attempt == 1
        delivery.ack()
        info = consumer.inspect("orders")
        assert (info.length, info.in_flight) == (0, 0)
        assert all(admin.llen(key) == 0 for key in info.details["processing_keys"])


@pytest.mark.parametrize("prefetch", [1, 10])
def test_a_nacked_message_reaches_a_consumer_already_waiting_at_once(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis, prefix: str, prefetch: int
) -> None:
    assert RedisListOptions().delay_poll_interval > PROMPT
    holder, waiter = connect(), connect(f"{prefix}-waiter")
    holder.publish("orders", "job")
    held = holder.subscribe("orders").receive(timeout=5)
    assert held is not None
    subscription = waiter.subscribe("orders", prefetch=prefetch)
    subscription.receive(timeout=0)
    waiting = Waiting(subscription, PROMPT)
    blocked(redis_client, f"{prefix}-waiter")
    held.nack(requeue=True)
    delivery = waiting.result()
    assert delivery is not None and delivery.body == "job" and delivery.attempt == 2
    delivery.ack()


@pytest.mark.parametrize("prefetch", [1, 10])
def test_deliveries_handed_back_on_close_reach_a_consumer_already_waiting_at_once(
    connect: Callable[..., RedisListBroker], redis_client: redis.Redis, prefix: str, prefetch: int
) -> None:
    holder, waiter = connect(), connect(f"{prefix}-waiter")
    holder.publish_many("orders", range(10))
    closing = holder.subscribe("orders", prefetch=10)
    first = closing.receive(timeout=5)
    assert first is not None and first.body == 0 and closing.buffered == 9
    subscription = waiter.subscribe("orders", prefetch=prefetch)
    subscription.receive(timeout=0)
    waiting = Waiting(subscription, PROMPT)
    blocked(redis_client, f"{prefix}-waiter")
    closing.close()  # hands back the 9 it fetched and never returned
    got = [waiting.result()]
    while len(got) < 9:
        got.append(subscription.receive(timeout=PROMPT))
    assert [d.body for d in got if d is not None] == list(range(1, 10))
    waiter.ack(*got)
    first.ack()


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds of every client-side sleep the sync redis+list broker takes while
    waiting for messages, in order (it sleeps all the same)."""
    from brokerkit.backends.redis.list import broker as list_broker

    taken: list[float] = []
    real_sleep = list_broker.sleep
    monkeypatch.setattr(list_broker, "sleep", lambda s: (taken.append(s), real_sleep(s))[1])
    return taken


def test_a_waiting_consumer_that_only_polls_waits_on_the_server_never_in_a_client_sleep(
    redis_server: RedisServer, slept: list[float]
) -> None:
    """With nothing held and no lease out, every wake-up of a waiting consumer is only a
    look again (``delay_poll_interval``): it blocks in BLMOVE to its end, so that a
    message that comes meanwhile reaches it at once. (Waiting out the last server tick
    in a client sleep, as it does for a due time it knows of, held every message that
    came in that tenth of a second back until the sleep ended: a p99 of 105 ms at 500
    messages a second.)"""
    url = redis_server.url("redis+list")
    with brokerkit.connect(url, delay_poll_interval=0.05) as consumer:
        subscription = consumer.subscribe("orders")
        # A dozen poll intervals, each ending less than a server tick after it began.
        assert subscription.receive(timeout=0.6) is None
        assert slept == []


def test_a_waiting_consumer_still_wakes_to_the_millisecond_for_a_due_time_it_knows(
    redis_server: RedisServer, slept: list[float]
) -> None:
    """The other side of the test above: the due time of a retry this consumer delayed
    itself is waited for in a client sleep over the last server tick (punctual)."""
    url = redis_server.url("redis+list")
    with brokerkit.connect(url) as broker:
        broker.publish("orders", "retry me")
        subscription = broker.subscribe("orders")
        first = subscription.receive(timeout=5)
        assert first is not None
        first.nack(delay=0.3)  # this consumer knows when it is due
        again = subscription.receive(timeout=5)
        assert again is not None and again.body == "retry me" and again.attempt == 2
        again.ack()
        assert slept, "the due time it knew of was not waited for to the millisecond"


def test_a_lease_running_out_is_no_due_time_worth_a_client_sleep(
    redis_server: RedisServer, slept: list[float]
) -> None:
    """A waiting consumer whose next wake-up is for its lease groups (to rescue what ran
    out) blocks on the server to the end: a rescue a server tick late is harmless. (It
    slept out the last tick in the client, as for a held message, and with groups
    falling due one after another, as they do while anything stays in flight, it
    looked at the queue only when its heartbeat was due: for seconds.)"""
    url = redis_server.url("redis+list")
    with (
        brokerkit.connect(url) as holder,
        brokerkit.connect(url, visibility_timeout=0.4) as waiter,
    ):
        holder.publish("orders", "held")
        held = holder.subscribe("orders").receive(timeout=5)
        assert held is not None  # a lease stays out: the index of lease groups stays
        subscription = waiter.subscribe("orders")
        for n in range(3):
            waiter.publish("orders", n)
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            delivery.ack()  # its lease group stays in the index until it falls due
        # The groups fall due within this wait, which ends on the server.
        assert subscription.receive(timeout=0.8) is None
        assert slept == []
        held.ack()


def test_a_held_message_the_rescue_reports_is_released_when_due_not_at_the_next_rescue(
    redis_server: RedisServer,
) -> None:
    """A consumer that learns of a held message from its maintenance looks for it when it
    is due, not at the maintenance's own next run (at least 50 ms away)."""
    url = redis_server.url("redis+list")
    with brokerkit.connect(url) as broker:
        subscription = broker.subscribe("orders")
        # due in 200 ms: the first receive comes well before, even on a loaded machine
        broker.publish("orders", "soon", delay=0.2)
        assert subscription.receive(timeout=0) is None  # its first maintenance ran
        state = subscription.state
        assert state.next_release < state.next_maintenance
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == "soon"
        delivery.ack()
