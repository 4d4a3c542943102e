"""How fast a handed-back or nacked message reaches a consumer already waiting
(issue 18: within 50 ms, any prefetch, redis+list and redis+stream).

Two brokers on one topic and group: a *holder* and a *waiter*. The waiter's thread
receives in a loop (prefetch 1 or 10), each ``receive`` waiting 0.25 s (as the
worker's slots poll) or until a message comes (``timeout=None``); a probe message it
receives first shows that it is in its loop, blocked in ``receive`` again a moment
later. Then, the clock started:

- ``close``: the holder, having fetched 10 messages with prefetch 10 and taken one,
  closes its subscription, handing back the 9 it never returned;
- ``nack``: the holder nacks (requeue) the one delivery it holds.

The figures: milliseconds from the hand-back (or nack) call to the waiter's first and
last arrival of those messages.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import brokerkit
from benchmarks.bookkeeping import delete_prefix

__all__ = ["Handback", "handbacks"]

#: The issue's bound on how long a handed-back message may wait.
LIMIT_MS = 50.0
#: Give up waiting for the handed-back messages after this long.
_PATIENCE = 15.0
_STOP = b"stop"


@dataclass(frozen=True)
class Handback:
    backend: str
    how: str
    prefetch: int
    #: The waiter's receive timeout (``None``: until a message comes).
    timeout: float | None
    messages: int
    arrived: int
    first_ms: float | None
    last_ms: float | None

    @property
    def met(self) -> bool:
        return self.arrived == self.messages and (self.last_ms or 0.0) <= LIMIT_MS

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "met": self.met, "limit_ms": LIMIT_MS}


class _Waiter:
    """A consumer receiving in a thread of its own, stamping each arrival."""

    def __init__(self, broker: Any, topic: str, prefetch: int, timeout: float | None) -> None:
        self.broker = broker
        self.topic = topic
        self.timeout = timeout
        self.stamps: dict[bytes, float] = {}
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.subscription = broker.subscribe(topic, group="g", prefetch=prefetch)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            delivery = self.subscription.receive(timeout=self.timeout)
            if delivery is None:
                continue
            if delivery.message.payload == _STOP:
                delivery.ack()
                return
            with self.changed:
                self.stamps[bytes(delivery.message.payload)] = time.perf_counter()
                self.changed.notify_all()
            delivery.ack()

    def wait_for(self, bodies: set[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not bodies <= set(self.stamps):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(left)

    def close(self) -> None:
        self.stop.set()
        self.broker.publish(self.topic, _STOP)  # wakes a receive without a timeout
        self.thread.join(10)
        self.subscription.close()


def _case(url: str, scheme: str, how: str, prefetch: int, timeout: float | None) -> Handback:
    base = url.split("://", 1)[1]
    prefix = f"bench18h-{secrets.token_hex(3)}"
    topic = "handback"
    with (
        brokerkit.connect(f"{scheme}://{base}?prefix={prefix}") as holder_broker,
        brokerkit.connect(f"{scheme}://{base}?prefix={prefix}") as waiter_broker,
    ):
        count = 10 if how == "close" else 1
        bodies = [f"m{n}".encode() for n in range(count)]
        holder = holder_broker.subscribe(topic, group="g", prefetch=count)
        holder_broker.publish_many(topic, bodies)
        taken = holder.receive(timeout=5)
        if taken is None:
            raise RuntimeError(f"{scheme}: the holder fetched nothing")
        waiter = _Waiter(waiter_broker, topic, prefetch, timeout)
        try:
            probe = b"probe"
            holder_broker.publish(topic, probe)  # the holder does not fetch again
            waiter.wait_for({probe}, 10)
            if probe not in waiter.stamps:
                raise RuntimeError(f"{scheme}: the waiting consumer never got the probe")
            handed = {bytes(d.message.payload) for d in holder.buffered_deliveries()}
            if how == "nack":
                handed = {bytes(taken.message.payload)}
            started = time.perf_counter()
            if how == "close":
                holder.close()
            else:
                holder_broker.nack(taken, requeue=True)
            waiter.wait_for(handed, _PATIENCE)
            times = [1000 * (waiter.stamps[b] - started) for b in handed if b in waiter.stamps]
        finally:
            waiter.close()
            if how == "close":
                holder_broker.ack(taken)
            else:
                holder.close()
        holder_broker.purge(topic)
    delete_prefix(url, prefix)
    return Handback(
        scheme,
        how,
        prefetch,
        timeout,
        len(handed),
        len(times),
        min(times) if times else None,
        max(times) if times else None,
    )


def handbacks(url: str, say: Callable[[str], None] = print) -> list[Handback]:
    """Every case: redis+list and redis+stream, close and nack, the waiter's prefetch
    1 and 10, its receive timeout 0.25 s and none."""
    results = []
    for scheme in ("redis+list", "redis+stream"):
        for how in ("close", "nack"):
            for prefetch in (1, 10):
                for timeout in (0.25, None):
                    say(f"  {scheme}: {how}, the waiter's prefetch {prefetch}, timeout {timeout}")
                    results.append(_case(url, scheme, how, prefetch, timeout))
    return results
