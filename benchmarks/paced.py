"""Publish-to-receive latency at a steady rate, the consumer waiting (issue 18: redis+list's
median within 100 us of raw ``BLMOVE``): ``python -m benchmarks.paced``, or the
``latency`` part of ``python -m benchmarks.issue18``.

The suite's ``latency`` step is a ping-pong: the next message is published the moment
the last one arrived, while the consumer is still acking it, so its figure includes the
consumer's own work after a delivery. This measures what the issue measured instead: a
publisher sending ``--rate`` messages a second (500) to a consumer in **another
process** (no shared interpreter lock), which is blocked waiting when each one comes.
Each body carries the ``time.perf_counter()`` read just before the publish call (the
clock is the system's monotonic clock, the same in both processes); the consumer
subtracts it from its own reading when ``receive`` returns (raw: when the blocking
read returns), before it acks.

Sides, in alternating rounds: redis+list (``receive``, then ``ack``) against raw
redis-py's ``LPUSH`` / ``BLMOVE`` + ``LREM``, and redis+stream against ``XADD`` /
``XREADGROUP BLOCK`` + ``XACK``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import secrets
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

import brokerkit
from benchmarks.bookkeeping import delete_prefix

__all__ = ["SIDES", "Paced", "paced"]

#: side -> the raw side it is compared with.
SIDES = {"redis+list": "raw list", "redis+stream": "raw stream"}
_STAMP = struct.Struct("<d")
_BLOCK_MS = 2000


@dataclass
class Paced:
    """Per side, the latencies of each round (microseconds)."""

    rate: float
    per_round: int
    rounds: dict[str, list[list[float]]] = field(default_factory=dict)

    def medians(self, side: str) -> list[float]:
        return [statistics.median(r) for r in self.rounds.get(side, [])]

    def p99s(self, side: str) -> list[float]:
        return [statistics.quantiles(r, n=100)[98] for r in self.rounds.get(side, [])]

    def extra(self, side: str) -> list[float]:
        """Per round, the side's median minus its raw counterpart's (microseconds)."""
        raw = self.medians(SIDES[side])
        return [a - b for a, b in zip(self.medians(side), raw, strict=False)]


def _body(size: int) -> bytes:
    return _STAMP.pack(time.perf_counter()) + b"x" * max(size - _STAMP.size, 0)


def _broker_url(side: str, url: str, prefix: str) -> str:
    """The brokerkit URL of ``side`` on the Redis at ``url`` (``redis://`` or
    ``rediss://``, its query kept), its keys under ``prefix``."""
    scheme, _, rest = url.partition("://")
    family = side.partition("+")[2]
    return f"{scheme}+{family}://{rest}{'&' if '?' in rest else '?'}prefix={prefix}"


def _settled() -> None:
    """What the consumer process's start-up allocated (its imports, the connection,
    the subscription) is collected and frozen before it signals ready: a service that
    has run a while has no start-up garbage left. Without it the first full
    collection of the process (12-14 ms here, about 50,000 objects) fell inside the
    measured round or not, by the imports of the parent process (which a spawned
    child runs again): the p99 of one side read 0.5 or 14 ms by which modules the
    benchmark's entry point imported. (The publisher does not collect during a
    round either: see :func:`_round`.)"""
    gc.collect()
    gc.freeze()


def _consume(side: str, url: str, name: str, count: int, ready: Any, out: Any) -> None:
    """The consumer process: signal ready once waiting, then stamp ``count`` arrivals."""
    now = time.perf_counter
    latencies: list[float] = []
    if side in SIDES:
        broker = brokerkit.connect(_broker_url(side, url, name))
        with broker, broker.subscribe("q", group="g") as subscription:
            subscription.receive(timeout=0)  # joined the group / registered
            _settled()
            ready.set()
            for _ in range(count):
                delivery = subscription.receive(timeout=_BLOCK_MS / 1000)
                if delivery is None:
                    break
                latencies.append(now() - _STAMP.unpack_from(delivery.message.payload)[0])
                delivery.ack()
    else:
        client = redis.Redis.from_url(url)
        key, processing = f"{name}:q", f"{name}:processing"
        if side == "raw stream":
            client.xgroup_create(key, "g", id="$", mkstream=True)
        _settled()
        ready.set()
        for _ in range(count):
            if side == "raw list":
                body = client.blmove(key, processing, _BLOCK_MS / 1000, "RIGHT", "LEFT")
                if body is None:
                    break
                latencies.append(now() - _STAMP.unpack_from(body)[0])
                client.lrem(processing, 1, body)
            else:
                reply = client.xreadgroup("g", "c", {key: ">"}, count=1, block=_BLOCK_MS)
                if not reply:
                    break
                entry_id, fields = reply[0][1][0]
                latencies.append(now() - _STAMP.unpack_from(fields[b"b"])[0])
                client.xack(key, "g", entry_id)
        client.close()
    out.put([x * 1e6 for x in latencies])


def _publisher(side: str, url: str, name: str) -> tuple[Callable[[bytes], Any], Callable[[], None]]:
    if side in SIDES:
        broker = brokerkit.connect(_broker_url(side, url, name))
        return (lambda body: broker.publish("q", body)), broker.close
    client = redis.Redis.from_url(url)
    key = f"{name}:q"
    if side == "raw list":
        return (lambda body: client.lpush(key, body)), client.close
    return (lambda body: client.xadd(key, {b"b": body})), client.close


def _round(side: str, url: str, count: int, rate: float, size: int) -> list[float]:
    name = f"bench-paced-{secrets.token_hex(4)}"
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=_consume, args=(side, url, name, count, ready, out))
    consumer.start()
    publish, close = _publisher(side, url, name)
    try:
        if not ready.wait(30):
            raise RuntimeError(f"paced: the {side} consumer did not start")
        time.sleep(0.05)  # the consumer is blocked in its first read by now
        # The publisher does not collect during the round either (under
        # benchmarks.issue18 it holds what the parts before this one left).
        gc.collect()
        collecting = gc.isenabled()
        gc.disable()
        try:
            gap = 1.0 / rate
            start = time.perf_counter()
            for n in range(count):
                due = start + n * gap
                while (left := due - time.perf_counter()) > 0:
                    time.sleep(left)
                publish(_body(size))
        finally:
            if collecting:
                gc.enable()
        latencies: list[float] = out.get(timeout=30)
        consumer.join(30)
    finally:
        close()
        if consumer.is_alive():
            consumer.kill()
        delete_prefix(url, name)
    if len(latencies) < count:
        raise RuntimeError(f"paced: {side} received {len(latencies)} of {count}")
    return latencies


def paced(
    url: str,
    *,
    rounds: int = 5,
    count: int = 400,
    rate: float = 500.0,
    size: int = 100,
    say: Callable[[str], None] = print,
) -> Paced:
    """Latency rounds of ``count`` messages at ``rate`` a second, the sides alternating."""
    result = Paced(rate=rate, per_round=count)
    sides = [s for pair in SIDES.items() for s in pair]
    for n in range(rounds + 1):  # the first round warms up
        for side in sides:
            latencies = _round(side, url, count, rate, size)
            if n:
                result.rounds.setdefault(side, []).append(latencies)
        say(f"  round {n} of {rounds}" if n else "  warm-up round done")
    return result


def report(result: Paced) -> list[str]:
    """The markdown table of :func:`paced`'s result."""

    def spread(values: list[float], fmt: str = ",.0f") -> str:
        if not values:
            return "-"
        return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"

    lines = [
        f"## Publish-to-receive at {result.rate:,.0f} messages a second, the consumer waiting",
        "",
        f"Microseconds from just before the publish call to `receive` returning in another "
        f"process ({result.per_round} messages a round); median over rounds of each "
        "round's p50 and p99 (min..max), and the median of per-round differences of p50 "
        "to the raw side (target for redis+list: within 100 us of raw `BLMOVE`).",
        "",
        "| side | p50 us | p99 us | p50 over raw, us | within 100 us |",
        "|---|---:|---:|---:|:-:|",
    ]
    for side, raw in SIDES.items():
        for name in (side, raw):
            extra = result.extra(name) if name == side else []
            target = name == "redis+list"  # the target is redis+list's
            met = "-" if not target else ("yes" if statistics.median(extra) <= 100 else "**no**")
            lines.append(
                f"| {name} | {spread(result.medians(name))} | {spread(result.p99s(name))} "
                f"| {spread(extra, ',.1f') if extra else '-'} | {met} |"
            )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import redis_at

    parser = argparse.ArgumentParser(prog="python -m benchmarks.paced", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=400, help="messages per round")
    parser.add_argument("--rate", type=float, default=500.0, help="messages a second")
    args = parser.parse_args(argv)
    with redis_at(args.redis_url) as url:
        result = paced(url, rounds=args.rounds, count=args.count, rate=args.rate)
    print("\n".join(report(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
