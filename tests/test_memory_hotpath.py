"""What the per-message shortcuts of the core and the memory backend must keep: ids,
one owner per delivery when threads share a subscription, and maxlen's trimming."""

from __future__ import annotations

import re
import threading
from collections import Counter

import pytest

import brokerkit
from brokerkit import BrokerClosed, ManualClock, Message
from brokerkit._message import new_message_id, new_message_ids
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.store import Group, Topic

_ID = re.compile(r"[0-9a-f]{28}")


def test_batch_ids_look_like_single_ids_and_never_repeat() -> None:
    single = new_message_id()
    # More ids than the 16-bit counter holds: the clock is read for every id, so a
    # batch this long spans milliseconds and its counter wrap repeats no id.
    batch = new_message_ids(70_000)
    assert len(batch) == len(set(batch)) == 70_000
    assert all(_ID.fullmatch(i) for i in [single, *batch])
    assert {i[12:24] for i in batch} == {single[12:24]}  # the process's random bits
    stamps = [int(i[:12], 16) for i in batch]
    assert stamps == sorted(stamps)  # milliseconds, in order
    assert int(single[:12], 16) <= stamps[0]


def test_publish_many_gives_every_message_its_own_id() -> None:
    with brokerkit.connect("memory://") as broker:
        ids = broker.publish_many("t", [b"x"] * 1000 + ["text", {"json": 1}])
        assert len(set(ids)) == 1002
        got = list(broker.consume("t", timeout=0, prefetch=100))
        assert [d.id for d in got] == ids
        assert [d.content_type for d in got[-3:]] == [
            "application/octet-stream",
            "text/plain; charset=utf-8",
            "application/json",
        ]
        broker.ack(*got)


def test_a_group_whose_next_message_was_trimmed_goes_on_from_the_oldest_kept() -> None:
    with brokerkit.connect("memory://?maxlen=3", clock=ManualClock()) as broker:
        subscription = broker.subscribe("t", prefetch=10)  # the group starts at offset 0
        broker.publish_many("t", range(10))  # offsets 0..6 are trimmed away
        first = subscription.receive(timeout=0)
        assert first is not None
        rest = [subscription.receive(timeout=0), subscription.receive(timeout=0)]
        assert [first.body] + [d.body for d in rest if d] == [7, 8, 9]
        assert subscription.receive(timeout=0) is None


def test_threads_sharing_one_subscription_get_each_delivery_once() -> None:
    """A worker's slots receive from one subscription in several threads: the buffer
    a fetch filled is shared out without duplicates or losses."""
    count = 3000
    seen: Counter[int] = Counter()
    lock = threading.Lock()
    with brokerkit.connect("memory://") as broker:
        broker.publish_many("t", range(count))
        subscription = broker.subscribe("t", prefetch=50)

        def slot() -> None:
            while (delivery := subscription.receive(timeout=0)) is not None:
                with lock:
                    seen[delivery.body] += 1
                delivery.ack()

        threads = [threading.Thread(target=slot) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(seen) == list(range(count))
        assert set(seen.values()) == {1}
        assert broker.inspect("t").in_flight == 0


def test_a_close_racing_receives_hands_back_only_what_no_receive_returned() -> None:
    """close() in one thread while others receive: each buffered delivery goes either to
    a receive (and stays that receiver's to settle) or back to the topic, never both."""
    count = 4000
    with brokerkit.connect("memory://race") as broker, brokerkit.connect("memory://race") as other:
        broker.publish_many("t", range(count))
        subscription = broker.subscribe("t", prefetch=200)
        received: list[brokerkit.Delivery] = []
        lock = threading.Lock()
        started = threading.Barrier(4)

        def slot() -> None:
            started.wait()
            while True:
                try:
                    delivery = subscription.receive(timeout=0)
                except BrokerClosed:
                    return
                if delivery is None:
                    return
                with lock:
                    received.append(delivery)

        threads = [threading.Thread(target=slot) for _ in range(3)]
        for thread in threads:
            thread.start()
        started.wait()
        subscription.close()
        for thread in threads:
            thread.join(30)
        assert all(not d.settled for d in received)  # none was handed back under them
        broker.ack(*received)
        rest = list(other.consume("t", timeout=0, prefetch=500))
        bodies = [d.body for d in received] + [d.body for d in rest]
        assert sorted(bodies) == list(range(count))  # each exactly once
        other.ack(*rest)


class _FailsOnTheThird(MemoryBroker):
    """A rule that fails half-way through a fetch (as a subclass's rule might)."""

    calls = 0

    @staticmethod
    def _next(topic: Topic, group: Group) -> tuple[int, Message, int] | None:
        _FailsOnTheThird.calls += 1
        if _FailsOnTheThird.calls == 3:
            raise RuntimeError("the third message breaks the rule")
        return MemoryBroker._next(topic, group)


def test_leases_a_failed_fetch_made_still_run_out() -> None:
    clock = ManualClock()
    broken = _FailsOnTheThird.from_url("memory://half-way", clock=clock, visibility_timeout=5)
    with broken, brokerkit.connect("memory://half-way", clock=clock) as other:
        broken.publish_many("t", [1, 2, 3])
        with pytest.raises(RuntimeError):
            broken.subscribe("t", prefetch=3).receive(timeout=0)
        assert broken.inspect("t").in_flight == 2  # 1 and 2 were leased, never handed out
        clock.advance(5)
        got = list(other.consume("t", timeout=0, prefetch=3))
        assert sorted(d.body for d in got) == [1, 2, 3]
        other.ack(*got)
