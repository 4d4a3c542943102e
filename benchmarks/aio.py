"""The asyncio API against raw ``redis.asyncio``, the sync API and FastStream, in one run.

    python -m benchmarks.aio [--redis-url URL] [--messages 2000] [--rounds 7]

On one Redis (a private redis-server started here, or ``--redis-url``), in alternating
rounds (every side once per round, the order reversed each round), each ratio the
median of the per-round ratios:

- consume+ack with prefetch 100 (each fetched batch acked in one call), for
  redis+stream and redis+list, async and sync, each against raw redis-py of its own
  flavour doing XREADGROUP COUNT 100 + one XACK per batch (the same baseline as the
  sync suite in ``benchmarks/run.py``);
- single publish latency (median of 300 calls), async brokerkit against raw
  ``redis.asyncio`` XADD / LPUSH;
- 100 concurrent consumer tasks in one process on redis+stream, each message acked on
  its own, against raw redis.asyncio doing the same (the limit) and FastStream's Redis
  stream subscriber with ``max_workers=100`` on the same Redis: the steady rate, from
  the round's first 10% of acks (the tasks' first fetches, their subscriptions' set-up
  and new connections) to its last.

Writes ``benchmarks/results/aio.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import redis.asyncio as aioredis

import brokerkit
import brokerkit.aio
from benchmarks.run import redis_at

RESULTS = Path(__file__).resolve().parent / "results"
BODY = b"x" * 100
PREFETCH = 100


def _fresh(label: str) -> str:
    return f"bench-aio-{label}-{uuid.uuid4().hex[:8]}"


# -- consume+ack, prefetch 100 ---------------------------------------------------------


async def brokerkit_async_consume(url: str, scheme: str, count: int, body: bytes = BODY) -> float:
    topic = _fresh("t")
    async with brokerkit.aio.connect(url.replace("redis", scheme, 1), prefix=_fresh("p")) as broker:
        await broker.publish_many(topic, [body] * count)
        subscription = await broker.subscribe(topic, prefetch=PREFETCH)
        start = time.perf_counter()
        pending = []
        for _ in range(count):  # each fetched batch acked in one call, as benchmarks/run.py
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            pending.append(delivery)
            if subscription.buffered == 0:
                await broker.ack(*pending)
                pending.clear()
        await broker.ack(*pending)
        elapsed = time.perf_counter() - start
        await subscription.close()
        await broker.purge(topic)
    return count / elapsed


def brokerkit_sync_consume(url: str, scheme: str, count: int, body: bytes = BODY) -> float:
    topic = _fresh("t")
    with brokerkit.connect(url.replace("redis", scheme, 1), prefix=_fresh("p")) as broker:
        broker.publish_many(topic, [body] * count)
        subscription = broker.subscribe(topic, prefetch=PREFETCH)
        start = time.perf_counter()
        pending = []
        for _ in range(count):
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            pending.append(delivery)
            if subscription.buffered == 0:
                broker.ack(*pending)
                pending.clear()
        broker.ack(*pending)
        elapsed = time.perf_counter() - start
        subscription.close()
        broker.purge(topic)
    return count / elapsed


async def raw_async_consume(url: str, count: int, body: bytes = BODY) -> float:
    client = aioredis.Redis.from_url(url)
    key = _fresh("raw")
    try:
        await client.xgroup_create(key, "g", id="0", mkstream=True)
        pipe = client.pipeline(transaction=False)
        for _ in range(count):
            pipe.xadd(key, {"body": body})
        await pipe.execute()
        start = time.perf_counter()
        seen = 0
        while seen < count:
            reply = await client.xreadgroup("g", "c", {key: ">"}, count=PREFETCH, block=1000)
            ids = [entry_id for _, entries in reply for entry_id, _ in entries]
            await client.xack(key, "g", *ids)
            seen += len(ids)
        return count / (time.perf_counter() - start)
    finally:
        await client.delete(key)
        await client.aclose()


def raw_sync_consume(url: str, count: int, body: bytes = BODY) -> float:
    client = redis.Redis.from_url(url)
    key = _fresh("raw")
    try:
        client.xgroup_create(key, "g", id="0", mkstream=True)
        pipe = client.pipeline(transaction=False)
        for _ in range(count):
            pipe.xadd(key, {"body": body})
        pipe.execute()
        start = time.perf_counter()
        seen = 0
        while seen < count:
            reply: Any = client.xreadgroup("g", "c", {key: ">"}, count=PREFETCH, block=1000)
            ids = [entry_id for _, entries in reply for entry_id, _ in entries]
            client.xack(key, "g", *ids)
            seen += len(ids)
        return count / (time.perf_counter() - start)
    finally:
        client.delete(key)
        client.close()


# -- single publish latency ---------------------------------------------------------------

LATENCY_CALLS = 300


async def _median_latency(call: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


async def brokerkit_publish_latency(url: str, scheme: str) -> float:
    topic = _fresh("t")
    async with brokerkit.aio.connect(url.replace("redis", scheme, 1), prefix=_fresh("p")) as broker:
        await broker.publish(topic, BODY)  # connect
        result = await _median_latency(lambda: broker.publish(topic, BODY))
        await broker.purge(topic)
    return result


async def raw_publish_latency(url: str, scheme: str) -> float:
    client = aioredis.Redis.from_url(url)
    key = _fresh("raw")
    try:
        if scheme == "redis+stream":
            await client.xadd(key, {"body": BODY})
            return await _median_latency(lambda: client.xadd(key, {"body": BODY}))
        await client.lpush(key, BODY)
        return await _median_latency(lambda: client.lpush(key, BODY))
    finally:
        await client.delete(key)
        await client.aclose()


# -- 100 concurrent consumer tasks against FastStream -------------------------------------

TASKS = 100
#: The share of a round's messages acked before its clock starts: each task's first
#: fetch, its subscription's setup and the client's new connections fall in it, on
#: every side alike, so that the figure is the tasks' steady rate.
WARM_SHARE = 0.1


class _Pace:
    """Counts a round's acks: its clock starts at the ack that ends the warm share and
    stops at the last; :meth:`rate` is the messages a second in between."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.warm = max(int(count * WARM_SHARE), 1)
        self.done = 0
        self.started = self.ended = 0.0
        self.finished = asyncio.Event()

    def acked(self) -> None:
        self.done += 1
        if self.done == self.warm:
            self.started = time.perf_counter()
        if self.done == self.count:
            self.ended = time.perf_counter()
            self.finished.set()

    async def wait(self, timeout: float) -> None:
        await asyncio.wait_for(self.finished.wait(), timeout)

    def rate(self) -> float:
        return (self.count - self.warm) / (self.ended - self.started)


async def brokerkit_tasks(url: str, count: int) -> float:
    topic = _fresh("t")
    async with brokerkit.aio.connect(
        url.replace("redis", "redis+stream", 1), prefix=_fresh("p")
    ) as broker:
        await broker.publish_many(topic, [BODY] * count)
        pace = _Pace(count)

        async def consumer() -> None:
            async for delivery in broker.consume(topic, prefetch=10):
                await delivery.ack()
                pace.acked()
                if pace.finished.is_set():
                    return

        tasks = [asyncio.create_task(consumer()) for _ in range(TASKS)]
        await pace.wait(120)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.purge(topic)
    return pace.rate()


async def raw_tasks(url: str, count: int) -> float:
    """The limit: raw redis.asyncio, 100 tasks each reading 10 at a time and acking
    every message with its own XACK, as a per-message handler does."""
    client = aioredis.Redis.from_url(url, max_connections=2**31)
    key = _fresh("rawtasks")
    await client.xgroup_create(key, "g", id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for _ in range(count):
        pipe.xadd(key, {"body": BODY})
    await pipe.execute()
    pace = _Pace(count)

    async def consumer(number: int) -> None:
        while not pace.finished.is_set():
            reply = await client.xreadgroup("g", f"c{number}", {key: ">"}, count=10, block=1000)
            for _, entries in reply:
                for entry_id, _ in entries:
                    await client.xack(key, "g", entry_id)
                    pace.acked()

    tasks = [asyncio.create_task(consumer(n)) for n in range(TASKS)]
    await pace.wait(120)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.delete(key)
    await client.aclose()
    return pace.rate()


async def faststream_tasks(url: str, count: int) -> float:
    from faststream.redis import RedisBroker, StreamSub

    stream = _fresh("fs")
    broker = RedisBroker(url, logger=None)
    pace = _Pace(count)

    # last_id="0": the group starts at the beginning, as brokerkit's default group does.
    subscriber = StreamSub(stream, group="g", consumer="c", last_id="0")

    @broker.subscriber(stream=subscriber, max_workers=TASKS)
    async def handle(body: bytes) -> None:
        pace.acked()

    await broker.connect()
    for _ in range(count):
        await broker.publish(BODY, stream=stream)
    await broker.start()
    await pace.wait(300)
    await broker.stop()
    client = aioredis.Redis.from_url(url)
    await client.delete(stream)
    await client.aclose()
    return pace.rate()


# -- the run ------------------------------------------------------------------------------


def alternate(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each side once per round (order reversed every other round), after one warm-up."""
    names = list(sides)
    for name in names:
        sides[name]()  # warm-up, not counted
    figures: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else reversed(names):
            figures[name].append(sides[name]())
    return figures


def ratio(figures: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(figures[a], figures[b], strict=True))


def _consume_rows(url: str, n: int, body: bytes, rounds: int) -> list[str]:
    """The consume+ack table's rows for one body size, in alternating rounds."""
    run = asyncio.run
    consume = alternate(
        rounds,
        {
            "aio stream": lambda: run(brokerkit_async_consume(url, "redis+stream", n, body)),
            "aio list": lambda: run(brokerkit_async_consume(url, "redis+list", n, body)),
            "raw aio": lambda: run(raw_async_consume(url, n, body)),
            "sync stream": lambda: brokerkit_sync_consume(url, "redis+stream", n, body),
            "sync list": lambda: brokerkit_sync_consume(url, "redis+list", n, body),
            "raw sync": lambda: raw_sync_consume(url, n, body),
        },
    )
    rows = []
    for side, raw in (
        ("aio stream", "raw aio"),
        ("sync stream", "raw sync"),
        ("aio list", "raw aio"),
        ("sync list", "raw sync"),
        ("raw aio", "raw aio"),
        ("raw sync", "raw sync"),
    ):
        rows.append(
            f"| {len(body):,} | {side} | {statistics.median(consume[side]):,.0f} | "
            f"{ratio(consume, side, raw):.2f} |"
        )
    return rows


def _sizes(text: str) -> list[int]:
    """``--sizes``: body sizes in bytes, each 1 or more, comma-separated."""
    try:
        sizes = [int(size) for size in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes in bytes, each 1 or more, as 100,10000")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-faststream", action="store_true")
    parser.add_argument(
        "--task-messages",
        type=int,
        default=10_000,
        help="messages a round of the 100 concurrent tasks (default 10,000)",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[100],
        help="consume+ack body sizes in bytes, comma-separated (default 100)",
    )
    args = parser.parse_args(argv)
    if args.task_messages < 100:
        parser.error("--task-messages must be 100 or more (the clock starts at the 10% ack)")
    sizes: list[int] = args.sizes
    n = args.messages
    lines = [
        "# brokerkit.aio benchmarks",
        "",
        f"`python -m benchmarks.aio --messages {n} --rounds {args.rounds} "
        f"--sizes {','.join(map(str, sizes))} --task-messages {args.task_messages}`; "
        "100-byte bodies but where a size is given; medians of per-round ratios.",
        "",
    ]
    with redis_at(args.redis_url) as url:
        run = asyncio.run
        lines += [
            "## consume+ack, prefetch 100 (msg/s; ratio to raw XREADGROUP COUNT 100 + XACK)",
            "",
            "| body bytes | side | msg/s (median) | ratio to its raw baseline |",
            "|---:|---|---|---|",
        ]
        for size in sizes:
            lines += _consume_rows(url, n, b"x" * size, args.rounds)
        lines.append("")

        latency = alternate(
            args.rounds,
            {
                "stream": lambda: run(brokerkit_publish_latency(url, "redis+stream")),
                "raw xadd": lambda: run(raw_publish_latency(url, "redis+stream")),
                "list": lambda: run(brokerkit_publish_latency(url, "redis+list")),
                "raw lpush": lambda: run(raw_publish_latency(url, "redis+list")),
            },
        )
        lines += [
            "",
            "## single publish latency, asyncio (µs, median of 300 calls; target ≤ 1.2x raw)",
            "",
            "| backend | brokerkit µs | raw redis.asyncio µs | ratio |",
            "|---|---|---|---|",
            f"| redis+stream | {statistics.median(latency['stream']):.0f} | "
            f"{statistics.median(latency['raw xadd']):.0f} | "
            f"{ratio(latency, 'stream', 'raw xadd'):.2f} |",
            f"| redis+list | {statistics.median(latency['list']):.0f} | "
            f"{statistics.median(latency['raw lpush']):.0f} | "
            f"{ratio(latency, 'list', 'raw lpush'):.2f} |",
        ]
        if not args.no_faststream:
            tasks = alternate(
                max(args.rounds // 2, 3),
                {
                    "brokerkit": lambda: run(brokerkit_tasks(url, args.task_messages)),
                    "raw": lambda: run(raw_tasks(url, args.task_messages)),
                    "faststream": lambda: run(faststream_tasks(url, args.task_messages)),
                },
            )
            lines += [
                "",
                f"## {TASKS} concurrent consumers on redis+stream, one ack per message (msg/s)",
                "",
                f"{args.task_messages:,} messages a round; each side's clock starts at its "
                f"{WARM_SHARE:.0%} ack (the tasks' first fetches and new connections fall "
                "before it) and stops at the last.",
                "",
                "| brokerkit.aio | raw redis.asyncio | FastStream (max_workers=100) "
                "| brokerkit / raw | brokerkit / FastStream |",
                "|---|---|---|---|---|",
                f"| {statistics.median(tasks['brokerkit']):,.0f} | "
                f"{statistics.median(tasks['raw']):,.0f} | "
                f"{statistics.median(tasks['faststream']):,.0f} | "
                f"{ratio(tasks, 'brokerkit', 'raw'):.2f} | "
                f"{ratio(tasks, 'brokerkit', 'faststream'):.1f} |",
            ]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "aio.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
