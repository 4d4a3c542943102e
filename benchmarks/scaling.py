"""Consume scaling with consumer processes (issue 18): 1, 2 and 4 processes drain one
prefilled topic (consume+ack, prefetch 100), redis+list and redis+stream against raw
redis-py's stream (``XREADGROUP COUNT 100`` + one ``XACK`` per batch, one group).

Each process connects and subscribes, then all start together (a barrier); the
figure is messages over the time from the start to the last ack of any process.
This machine has two cores shared with the clients, so more than two processes
mostly measure contention for them: what a message costs the CPUs then decides the
rate. So each round also counts the consumers' CPU time (user and system, from the
barrier to their last ack) and the server's (``INFO cpu``, over the round), per
message.

Every consumer has talked to the server once before the barrier (a ``PING``, or an
``inspect``), as a consumer that has run for a while has: a process's first connection
imports the ``idna`` codec (``socket.getaddrinfo`` encodes the host name with it), and
that import's new objects set off a full garbage collection over everything the
process imported (this module's spawned children import ``benchmarks.issue18`` too,
about 50,000 objects): about 10 ms once per process, which at 5,000 messages a process
doubled redis+list's CPU a message (the redis+list backend makes its first connection
at its first fetch; redis+stream's subscribe had made one).
"""

from __future__ import annotations

import multiprocessing
import resource
import secrets
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import redis

import brokerkit
from benchmarks.bookkeeping import delete_prefix

__all__ = ["SIDES", "Round", "scaling"]

SIDES = ("redis+list", "redis+stream", "raw stream")


class Round(NamedTuple):
    """One round of one side with some number of consumer processes."""

    #: messages a second over all processes
    rate: float
    #: the consumers' CPU time (user + system) a message, in us
    client_us: float
    #: the Redis server's CPU time (user + system) a message, in us
    server_us: float


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu_seconds(url: str) -> float:
    with redis.Redis.from_url(url) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _consume(url: str, side: str, key: str, barrier: Any, out: Any) -> None:
    """One consumer process: drain ``key`` after the barrier, put (first, last, count,
    CPU seconds from the barrier to the end)."""
    got, last = 0, 0.0
    if side == "raw stream":
        r: Any = redis.Redis.from_url(url)
        consumer = secrets.token_hex(4)
        r.ping()  # connected before the clock starts, as the brokerkit sides are
        barrier.wait()
        first, cpu = time.monotonic(), _cpu_seconds()
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
            broker.inspect(key)  # connected before the clock starts (see the module)
            barrier.wait()
            first, cpu = time.monotonic(), _cpu_seconds()
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
    out.put((first, last, got, _cpu_seconds() - cpu))


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


def _round(url: str, side: str, processes: int, count: int) -> Round:
    key = f"scale-{secrets.token_hex(4)}"
    _fill(url, side, key, count)
    server_cpu = _server_cpu_seconds(url)
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
    server_cpu = _server_cpu_seconds(url) - server_cpu
    for worker in workers:
        worker.join(30)
    _clean(url, side, key)
    got = int(sum(r[2] for r in results))
    if got < count:
        raise RuntimeError(f"{side}: {processes} processes consumed {got} of {count}")
    started = float(min(r[0] for r in results))
    ended = float(max(r[1] for r in results))
    client_cpu = float(sum(r[3] for r in results))
    return Round(count / (ended - started), client_cpu / got * 1e6, server_cpu / got * 1e6)


def scaling(
    url: str,
    processes: tuple[int, ...] = (1, 2, 4),
    count: int = 20_000,
    rounds: int = 3,
    say: Callable[[str], None] = print,
) -> dict[str, dict[int, list[Round]]]:
    """side -> processes -> each round's figures (sides alternating within each round)."""
    rates: dict[str, dict[int, list[Round]]] = {side: {} for side in SIDES}
    for n in processes:
        say(f"scaling: {n} consumer process(es), {rounds} rounds of {count} messages")
        for index in range(rounds):
            order = SIDES if index % 2 == 0 else SIDES[::-1]
            for side in order:
                rates[side].setdefault(n, []).append(_round(url, side, n, count))
    return rates
