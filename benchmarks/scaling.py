"""Consume scaling with consumer processes (issue 18): 1, 2 and 4 processes drain one
prefilled topic (consume+ack, prefetch 100), redis+list and redis+stream against raw
redis-py's stream (``XREADGROUP COUNT 100`` + one ``XACK`` per batch, one group).

Each process connects and subscribes, then all start together (a barrier); the
figure is messages over the time from the start to the last ack of any process.
This machine has two cores shared with the clients, so more than two processes
mostly measure contention for them.
"""

from __future__ import annotations

import multiprocessing
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis

import brokerkit
from benchmarks.bookkeeping import delete_prefix

__all__ = ["SIDES", "scaling"]

SIDES = ("redis+list", "redis+stream", "raw stream")


def _consume(url: str, side: str, key: str, barrier: Any, out: Any) -> None:
    """One consumer process: drain ``key`` after the barrier, put (first, last, count)."""
    got, last = 0, 0.0
    if side == "raw stream":
        r: Any = redis.Redis.from_url(url)
        consumer = secrets.token_hex(4)
        barrier.wait()
        first = time.monotonic()
        while True:
            reply = r.xreadgroup("g", consumer, {key: ">"}, count=100, block=300)
            ids = [entry_id for _, entries in reply for entry_id, _ in entries]
            if not ids:
                break
            r.xack(key, "g", *ids)
            got += len(ids)
            last = time.monotonic()
        r.close()
    else:
        broker = brokerkit.connect(_broker_url(url, side))
        with broker, broker.subscribe(key, group="g", prefetch=100) as subscription:
            barrier.wait()
            first = time.monotonic()
            pending = []
            while True:
                delivery = subscription.receive(timeout=0.3)
                if delivery is None:
                    break
                pending.append(delivery)
                if subscription.buffered == 0:
                    broker.ack(*pending)
                    got += len(pending)
                    pending.clear()
                    last = time.monotonic()
            if pending:
                broker.ack(*pending)
                got += len(pending)
                last = time.monotonic()
    out.put((first, last, got))


def _broker_url(url: str, side: str) -> str:
    return f"{side}://{url.split('://', 1)[1]}?prefix=bench18s"


def _fill(url: str, side: str, key: str, count: int) -> None:
    body = b"x" * 100
    if side == "raw stream":
        r: Any = redis.Redis.from_url(url)
        r.xgroup_create(key, "g", id="0", mkstream=True)
        for start in range(0, count, 500):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(500, count - start)):
                pipe.xadd(key, {"d": body})
            pipe.execute()
        r.close()
        return
    with brokerkit.connect(_broker_url(url, side)) as broker:
        if side == "redis+stream":
            broker.create_group(key, "g")  # type: ignore[attr-defined]
        for start in range(0, count, 500):
            broker.publish_many(key, [body] * min(500, count - start))


def _clean(url: str, side: str, key: str) -> None:
    if side == "raw stream":
        redis.Redis.from_url(url).delete(key)
        return
    with brokerkit.connect(_broker_url(url, side)) as broker:
        broker.purge(key)
    delete_prefix(url, "bench18s")


def _round(url: str, side: str, processes: int, count: int) -> float:
    key = f"scale-{secrets.token_hex(4)}"
    _fill(url, side, key, count)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    out = context.Queue()
    workers = [
        context.Process(target=_consume, args=(url, side, key, barrier, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    _clean(url, side, key)
    got = int(sum(r[2] for r in results))
    if got < count:
        raise RuntimeError(f"{side}: {processes} processes consumed {got} of {count}")
    started = float(min(r[0] for r in results))
    ended = float(max(r[1] for r in results))
    return count / (ended - started)


def scaling(
    url: str,
    processes: tuple[int, ...] = (1, 2, 4),
    count: int = 20_000,
    rounds: int = 3,
    say: Callable[[str], None] = print,
) -> dict[str, dict[int, list[float]]]:
    """side -> processes -> msg/s per round (sides alternating within each round)."""
    rates: dict[str, dict[int, list[float]]] = {side: {} for side in SIDES}
    for n in processes:
        say(f"scaling: {n} consumer process(es), {rounds} rounds of {count} messages")
        for index in range(rounds):
            order = SIDES if index % 2 == 0 else SIDES[::-1]
            for side in order:
                rates[side].setdefault(n, []).append(_round(url, side, n, count))
    return rates
