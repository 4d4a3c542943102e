"""memory://: a lease moved to run out earlier wakes the consumers already waiting, so
that one of them gets the delivery at its new deadline, not when its old timer (a
second at most) ends. Real time here: what is measured is the wake-up."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import brokerkit
import brokerkit.aio
from brokerkit import Delivery
from brokerkit.backends.memory.store import Store

#: Far below the one second a waiting fetch waits at most, far above the lease.
PROMPT = 0.5
SHORT_LEASE = 0.05


def _store(broker: object) -> Store:
    store = broker._store  # type: ignore[attr-defined]
    assert isinstance(store, Store)
    return store


def _until_someone_waits(store: Store) -> None:
    """Until a consumer's fetch is registered as waiting (a condition polled, not a
    guess at how long it takes to get there)."""
    deadline = time.monotonic() + 10
    while True:
        with store.lock:
            if store._waiters:
                return
        assert time.monotonic() < deadline, "the consumer never began to wait"
        time.sleep(0.001)


def test_a_lease_shortened_by_extend_wakes_a_waiting_consumer() -> None:
    with brokerkit.connect(f"memory://review5-{uuid.uuid4().hex}", visibility_timeout=30) as b:
        b.publish("t", "m")
        holder = b.subscribe("t", group="g")
        held = holder.receive(timeout=0)
        assert held is not None
        waiting = b.subscribe("t", group="g")
        got: list[tuple[Delivery | None, float]] = []
        done = threading.Event()

        def receive() -> None:
            got.append((waiting.receive(timeout=5), time.monotonic()))
            done.set()

        thread = threading.Thread(target=receive)
        thread.start()
        _until_someone_waits(_store(b))
        extended_at = time.monotonic()
        held.extend(SHORT_LEASE)
        assert done.wait(10)
        thread.join()
        delivery, at = got[0]
        assert delivery is not None and (delivery.body, delivery.attempt) == ("m", 2)
        assert at - extended_at >= SHORT_LEASE, "handed out before the new deadline"
        assert at - extended_at < PROMPT, (
            f"came {at - extended_at:.3f}s after extend({SHORT_LEASE}): "
            "the waiting consumer kept its old timer"
        )
        delivery.ack()


def test_an_asyncio_consumer_waiting_is_woken_by_a_shortened_lease() -> None:
    async def main() -> None:
        url = f"memory://review5-{uuid.uuid4().hex}"
        async with brokerkit.aio.connect(url, visibility_timeout=30) as b:
            await b.publish("t", "m")
            holder = await b.subscribe("t", group="g")
            held = await holder.receive(timeout=0)
            assert held is not None
            waiting = await b.subscribe("t", group="g")
            receiving = asyncio.create_task(waiting.receive(timeout=5))
            store = _store(b)
            deadline = time.monotonic() + 10
            while not store._waiters:
                assert time.monotonic() < deadline, "the consumer never began to wait"
                await asyncio.sleep(0.001)
            extended_at = time.monotonic()
            await held.extend(SHORT_LEASE)
            delivery = await asyncio.wait_for(receiving, 10)
            elapsed = time.monotonic() - extended_at
            assert delivery is not None and delivery.attempt == 2
            assert SHORT_LEASE <= elapsed < PROMPT, f"came {elapsed:.3f}s after the extend"
            await delivery.ack()

    asyncio.run(main())


def test_a_lease_lengthened_by_extend_still_holds() -> None:
    """The wake-up only makes waiting consumers look again: nothing comes early."""
    with brokerkit.connect(f"memory://review5-{uuid.uuid4().hex}", visibility_timeout=30) as b:
        b.publish("t", "m")
        held = b.subscribe("t", group="g").receive(timeout=0)
        assert held is not None
        held.extend(60)
        held.extend(SHORT_LEASE * 4)
        other = b.subscribe("t", group="g")
        assert other.receive(timeout=0) is None
        held.ack()
        assert other.receive(timeout=0) is None
