"""Publish-to-receive latency of redis+pubsub over asyncio (``brokerkit.aio``), next to
raw ``redis.asyncio`` PUBLISH/SUBSCRIBE.

The method of ``measure_pubsub.py``, on one event loop: for 1 and for 10 subscribers
(each a task with its own connection), the publisher sends one message, waits until
every subscriber has it, then sends the next, so the numbers are latency without
queueing. Each message carries its send time (``perf_counter_ns``); a subscriber's
sample is its receive time minus that. Raw ``redis.asyncio`` and brokerkit run
alternately, in rounds, against the same server, so that drift on a busy machine
hits both alike.

Usage (from the repository root)::

    .venv/bin/python scripts/measure_pubsub_aio.py                  # a private redis-server
    .venv/bin/python scripts/measure_pubsub_aio.py --url redis://localhost:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import brokerkit.aio
from scripts.measure_pubsub import PAD, server, summary

#: A receiver: given a "got it" callback and a stop event, read until stopped.
Receiver = Callable[[Callable[[bytes], None], asyncio.Event], Awaitable[None]]
Subscribe = Callable[[], Awaitable[Receiver]]
Publish = Callable[[bytes], Awaitable[object]]


class Round:
    """One measured run: N receivers, a stream of messages, the latency samples."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.samples: list[int] = []
        self._pending = 0
        self._all_in = asyncio.Event()

    def got(self, payload: bytes) -> None:
        self.samples.append(time.perf_counter_ns() - int(payload))
        self._pending -= 1
        if self._pending == 0:
            self._all_in.set()

    async def send(self, publish: Publish) -> None:
        self._pending = self.subscribers
        self._all_in.clear()
        await publish(str(time.perf_counter_ns()).zfill(PAD).encode())
        await asyncio.wait_for(self._all_in.wait(), 10)


async def run_round(
    subscribers: int, messages: int, subscribe: Subscribe, publish: Publish
) -> list[int]:
    """Latency samples (ns) of ``messages`` messages to ``subscribers`` receivers."""
    measured = Round(subscribers)
    stop = asyncio.Event()
    receivers = [await subscribe() for _ in range(subscribers)]  # subscribed on return
    tasks = [asyncio.ensure_future(r(measured.got, stop)) for r in receivers]
    try:
        for _ in range(messages):
            await measured.send(publish)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return measured.samples


def raw_redis(url: str, channel: str) -> tuple[Subscribe, Publish, Callable[[], Awaitable[None]]]:
    """Plain ``redis.asyncio``: ``PUBLISH`` and ``PubSub.get_message``."""
    client = aioredis.Redis.from_url(url)

    async def subscribe() -> Receiver:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        while await pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
            pass  # the confirmation was consumed (and ignored) by get_message

        async def receive(got: Callable[[bytes], None], stop: asyncio.Event) -> None:
            try:
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=0.2)
                    if message is not None and message["type"] == "message":
                        got(message["data"])
            finally:
                await pubsub.aclose()

        return receive

    return subscribe, lambda payload: client.publish(channel, payload), client.aclose


async def brokerkit_pubsub(
    url: str, topic: str
) -> tuple[Subscribe, Publish, Callable[[], Awaitable[None]]]:
    """brokerkit.aio: ``AsyncBroker.publish`` and ``AsyncSubscription.receive``."""
    scheme, rest = url.split("://", 1)
    bk_url = f"{'rediss' if scheme == 'rediss' else 'redis'}+pubsub://{rest}"
    publisher = await brokerkit.aio.connect(bk_url, prefix="measure")
    consumer = await brokerkit.aio.connect(bk_url, prefix="measure")

    async def subscribe() -> Receiver:
        subscription = await consumer.subscribe(topic)

        async def receive(got: Callable[[bytes], None], stop: asyncio.Event) -> None:
            async with subscription:
                while not stop.is_set():
                    delivery = await subscription.receive(timeout=0.2)
                    if delivery is not None:
                        got(delivery.body)

        return receive

    async def close() -> None:
        await publisher.close()
        await consumer.close()

    return subscribe, lambda payload: publisher.publish(topic, payload), close


async def measure(url: str, args: argparse.Namespace) -> None:
    info = redis.Redis.from_url(url).info("server")
    print(
        f"redis-server {info['redis_version']}, redis-py {redis.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}, asyncio; "
        f"{args.messages} messages per row, {args.rounds} alternating rounds, {PAD}-byte payload"
    )
    header = ("implementation", "subscribers", "samples", "median µs", "p99 µs")
    print("{:<30} {:>11} {:>8} {:>10} {:>9}".format(*header))
    for subscribers in args.subscribers:
        channel = f"measure-raw-{uuid.uuid4().hex[:8]}"
        topic = f"measure.{uuid.uuid4().hex[:8]}"
        raw_sub, raw_pub, raw_close = raw_redis(url, channel)
        bk_sub, bk_pub, bk_close = await brokerkit_pubsub(url, topic)
        raw, ours = "raw redis.asyncio", "brokerkit.aio redis+pubsub"
        results: dict[str, list[int]] = {raw: [], ours: []}
        per_round = max(args.messages // args.rounds, 1)
        try:
            await run_round(subscribers, 50, raw_sub, raw_pub)  # warm-up
            await run_round(subscribers, 50, bk_sub, bk_pub)
            for _ in range(args.rounds):
                results[raw] += await run_round(subscribers, per_round, raw_sub, raw_pub)
                results[ours] += await run_round(subscribers, per_round, bk_sub, bk_pub)
        finally:
            await bk_close()
            await raw_close()
        medians = {}
        for name, samples in results.items():
            median, p99 = summary(samples)
            medians[name] = median
            print(f"{name:<30} {subscribers:>11} {len(samples):>8} {median:>10.1f} {p99:>9.1f}")
        ratio = medians[ours] / medians[raw]
        print(f"{'ratio of medians':<30} {subscribers:>11} {'':>8} {ratio:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a redis:// URL (default: start a private redis-server)")
    parser.add_argument("--messages", type=int, default=2000, help="messages per subscriber count")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per backend")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    with server(args.url) as url:
        asyncio.run(measure(url, args))


if __name__ == "__main__":
    main()
