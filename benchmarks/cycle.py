"""Where a consume+ack cycle of 100 messages spends its wall time:
``python -m benchmarks.cycle``.

One consumer with prefetch 100 receives ``--count`` messages of ``--size`` bytes and
acks each batch of 100 in one call: brokerkit's redis+list, then raw redis-py's stream
(``XREADGROUP COUNT 100`` and one ``XACK`` of the ids it read), in alternating rounds on
one private redis-server (or ``--redis-url``: keys under a prefix of their own, deleted
at the end). Each step's wall time is summed over the round by wrapping it: for
redis+list the fetch (its send and the reading of its replies: ``lease_moved``, the
fetch by moves, or the script's ``lease_batch``), the decode of the envelopes
(``fetched_messages``), the receipts, the deliveries and the lease keeper's note, the
ack, and the rest (the receives that take from the buffer, the loop); for raw stream
its two commands and the rest. Printed in us a message, the median over the rounds.

This is a probe of issue 18's one missed target (redis+list at 10 KB); the wrapping
adds a few tenths of a us a step, so the steps' sum runs a little over an unwrapped
round's.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

import brokerkit
import brokerkit.backends.redis.list.broker as list_broker
from benchmarks.bookkeeping import delete_prefix
from benchmarks.run import redis_at
from brokerkit._delivery import Delivery

__all__ = ["measure"]

_PREFETCH = 100
#: the redis+list broker module's names wrapped, and the step each one's time goes to
_WRAPPED = {
    "lease_moved": "fetch",
    "lease_batch": "fetch",
    "fetched_messages": "decode",
    "fetch_receipts": "receipts, deliveries, keeper",
}


@contextmanager
def _timing(spent: dict[str, float], broker: Any) -> Iterator[None]:
    """Sum into ``spent`` the seconds of each step :data:`_WRAPPED` names, of
    ``Delivery._first_attempts`` and of ``broker``'s lease keeper's ``hold`` (the
    receipts' step), while the block runs."""

    def timed(step: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[step] = spent.get(step, 0.0) + time.perf_counter() - started

        return run

    originals = {name: getattr(list_broker, name) for name in _WRAPPED}
    first_attempts = Delivery.__dict__["_first_attempts"]
    keeper = broker._keeper
    try:
        for name, step in _WRAPPED.items():
            setattr(list_broker, name, timed(step, originals[name]))
        step = _WRAPPED["fetch_receipts"]
        Delivery._first_attempts = classmethod(timed(step, first_attempts.__func__))  # type: ignore[method-assign,assignment]
        keeper.hold = timed(step, keeper.hold)
        yield
    finally:
        for name, original in originals.items():
            setattr(list_broker, name, original)
        Delivery._first_attempts = first_attempts  # type: ignore[method-assign]
        del keeper.hold


def _brokerkit_round(broker: Any, body: bytes, count: int) -> dict[str, float]:
    """One round of redis+list: seconds a step, "ack" and "all" included."""
    topic = f"cycle-{secrets.token_hex(3)}"
    for start in range(0, count, 500):
        broker.publish_many(topic, [body] * min(500, count - start))
    spent: dict[str, float] = {"ack": 0.0}
    with broker.subscribe(topic, prefetch=_PREFETCH) as subscription, _timing(spent, broker):
        started = time.perf_counter()
        pending: list[Delivery] = []
        for _ in range(count):
            delivery = subscription.receive(timeout=10)
            if delivery is None:
                raise RuntimeError("benchmarks.cycle: a message did not come within 10 s")
            len(delivery.payload)
            pending.append(delivery)
            if len(pending) == _PREFETCH or not subscription.buffered:
                acking = time.perf_counter()
                broker.ack(*pending)
                spent["ack"] += time.perf_counter() - acking
                pending = []
        spent["all"] = time.perf_counter() - started
    broker.purge(topic)
    return spent


def _raw_round(client: redis.Redis, key: str, body: bytes, count: int) -> dict[str, float]:
    """One round of raw redis-py's stream: seconds a step, "all" included."""
    client.delete(key)
    client.xgroup_create(key, "g", id="0", mkstream=True)
    for start in range(0, count, 500):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(500, count - start)):
            pipe.xadd(key, {"d": body})
        pipe.execute()
    spent = {"XREADGROUP": 0.0, "XACK": 0.0}
    got = 0
    started = time.perf_counter()
    while got < count:
        reading = time.perf_counter()
        reply = client.xreadgroup("g", "c", {key: ">"}, count=_PREFETCH, block=10_000)
        spent["XREADGROUP"] += time.perf_counter() - reading
        ids = [entry_id for _, entries in reply for entry_id, fields in entries if fields]
        if not ids:
            raise RuntimeError("benchmarks.cycle: raw XREADGROUP read nothing within 10 s")
        got += len(ids)
        acking = time.perf_counter()
        client.xack(key, "g", *ids)
        spent["XACK"] += time.perf_counter() - acking
    spent["all"] = time.perf_counter() - started
    client.delete(key)
    return spent


def _per_message(rounds: list[dict[str, float]], count: int) -> dict[str, float]:
    """Step -> median us a message over ``rounds``, "rest" being "all" less the steps."""
    for spent in rounds:
        spent["rest"] = spent["all"] - sum(v for k, v in spent.items() if k != "all")
    return {step: statistics.median(r[step] for r in rounds) / count * 1e6 for step in rounds[0]}


def measure(url: str, size: int, count: int, rounds: int) -> dict[str, dict[str, float]]:
    """side -> step -> median us a message (one warm-up round of each side first)."""
    prefix = f"bench-cycle-{secrets.token_hex(3)}"
    body = secrets.token_bytes(size)
    kept: dict[str, list[dict[str, float]]] = {"redis+list": [], "raw stream": []}
    client = redis.Redis.from_url(url)
    try:
        with brokerkit.connect("redis+list://" + url.split("://", 1)[1], prefix=prefix) as broker:
            for index in range(rounds + 1):
                sides = [
                    ("redis+list", lambda: _brokerkit_round(broker, body, count)),
                    ("raw stream", lambda: _raw_round(client, f"{prefix}:raw", body, count)),
                ]
                for name, run in sides if index % 2 else reversed(sides):
                    spent = run()
                    if index:
                        kept[name].append(spent)
    finally:
        client.close()
        delete_prefix(url, prefix)
    return {name: _per_message(spent, count) for name, spent in kept.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cycle", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--size", type=int, default=10_000, help="body bytes")
    parser.add_argument("--count", type=int, default=20_000, help="messages a round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds of each side")
    args = parser.parse_args(argv)
    with redis_at(args.redis_url) as url:
        result = measure(url, args.size, args.count, args.rounds)
    print(f"us a message, {args.size:,} B bodies, median of {args.rounds} rounds")
    print("| side | step | us a message |")
    print("|---|---|---:|")
    for side, steps in result.items():
        last = ("rest", "all")
        for step in [*(s for s in steps if s not in last), *last]:
            print(f"| {side} | {step} | {steps[step]:.2f} |")
    ratio = result["raw stream"]["all"] / result["redis+list"]["all"]
    print(f"redis+list at {ratio:.2f} of raw stream's rate (the medians' ratio)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
