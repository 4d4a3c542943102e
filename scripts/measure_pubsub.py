"""Publish-to-receive latency of redis+pubsub, next to raw redis-py PUBLISH/SUBSCRIBE.

For 1 and for 10 subscribers (each a thread with its own connection), the
publisher sends one message, waits until every subscriber has it, then sends the
next, so the numbers are latency without queueing. Each message carries its send
time (``perf_counter_ns``); a subscriber's sample is its receive time minus that.
Raw redis-py and brokerkit run alternately, in rounds, against the same server,
so that drift on a busy machine hits both alike.

Usage (from the repository root)::

    .venv/bin/python scripts/measure_pubsub.py                  # a private redis-server
    .venv/bin/python scripts/measure_pubsub.py --url redis://localhost:6379/0 --messages 5000
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import brokerkit

#: A receiver: given a "got it" callback and a stop event, read until stopped.
Receiver = Callable[[Callable[[bytes], None], threading.Event], None]
PAD = 64  # payload bytes: the send time, zero-padded


class Round:
    """One measured run: N receivers, a stream of messages, the latency samples."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.samples: list[int] = []
        self._pending = 0
        self._cond = threading.Condition()

    def got(self, payload: bytes) -> None:
        now = time.perf_counter_ns()
        with self._cond:
            self.samples.append(now - int(payload))
            self._pending -= 1
            if self._pending == 0:
                self._cond.notify_all()

    def send(self, publish: Callable[[bytes], object]) -> None:
        with self._cond:
            self._pending = self.subscribers
        publish(str(time.perf_counter_ns()).zfill(PAD).encode())
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending == 0, timeout=10):
                raise RuntimeError("a subscriber did not receive a message within 10 s")


def run_round(
    subscribers: int,
    messages: int,
    subscribe: Callable[[], Receiver],
    publish: Callable[[bytes], object],
) -> list[int]:
    """Latency samples (ns) of ``messages`` messages to ``subscribers`` receivers."""
    measured = Round(subscribers)
    stop = threading.Event()
    receivers = [subscribe() for _ in range(subscribers)]  # subscribed on return
    threads = [threading.Thread(target=r, args=(measured.got, stop)) for r in receivers]
    for thread in threads:
        thread.start()
    try:
        for _ in range(messages):
            measured.send(publish)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return measured.samples


def raw_redis(url: str, channel: str) -> tuple[Callable[[], Receiver], Callable[[bytes], object]]:
    """Plain redis-py: ``PUBLISH`` and ``PubSub.get_message``."""
    client = redis.Redis.from_url(url)

    def subscribe() -> Receiver:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel)
        while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
            pass  # the confirmation was consumed (and ignored) by get_message

        def receive(got: Callable[[bytes], None], stop: threading.Event) -> None:
            try:
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and message["type"] == "message":
                        got(message["data"])
            finally:
                pubsub.close()

        return receive

    return subscribe, lambda payload: client.publish(channel, payload)


def brokerkit_pubsub(
    url: str, topic: str
) -> tuple[Callable[[], Receiver], Callable[[bytes], object], Callable[[], None]]:
    """brokerkit: ``Broker.publish`` and ``Subscription.receive``."""
    scheme, rest = url.split("://", 1)
    bk_url = f"{'rediss' if scheme == 'rediss' else 'redis'}+pubsub://{rest}"
    publisher = brokerkit.connect(bk_url, prefix="measure")
    consumer = brokerkit.connect(bk_url, prefix="measure")

    def subscribe() -> Receiver:
        subscription = consumer.subscribe(topic)

        def receive(got: Callable[[bytes], None], stop: threading.Event) -> None:
            with subscription:
                while not stop.is_set():
                    delivery = subscription.receive(timeout=0.2)
                    if delivery is not None:
                        got(delivery.body)

        return receive

    def close() -> None:
        publisher.close()
        consumer.close()

    return subscribe, lambda payload: publisher.publish(topic, payload), close


def summary(samples: list[int]) -> tuple[float, float]:
    """Median and 99th percentile, in microseconds."""
    median = statistics.median(samples) / 1000
    p99 = statistics.quantiles(samples, n=100, method="inclusive")[98] / 1000
    return median, p99


@contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.redis_server import RedisServer

    with RedisServer() as private:
        yield private.url("redis")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a redis:// URL (default: start a private redis-server)")
    parser.add_argument("--messages", type=int, default=2000, help="messages per subscriber count")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per backend")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()

    with server(args.url) as url:
        info = redis.Redis.from_url(url).info("server")
        print(
            f"redis-server {info['redis_version']}, redis-py {redis.__version__}, "
            f"Python {platform.python_version()}, {platform.machine()}; "
            f"{args.messages} messages per row, {args.rounds} alternating rounds, "
            f"{PAD}-byte payload"
        )
        header = ("implementation", "subscribers", "samples", "median µs", "p99 µs")
        print("{:<26} {:>11} {:>8} {:>10} {:>9}".format(*header))
        for subscribers in args.subscribers:
            channel = f"measure-raw-{uuid.uuid4().hex[:8]}"
            topic = f"measure.{uuid.uuid4().hex[:8]}"
            raw_sub, raw_pub = raw_redis(url, channel)
            bk_sub, bk_pub, bk_close = brokerkit_pubsub(url, topic)
            results: dict[str, list[int]] = {"raw redis-py": [], "brokerkit redis+pubsub": []}
            per_round = max(args.messages // args.rounds, 1)
            try:
                run_round(subscribers, 50, raw_sub, raw_pub)  # warm-up
                run_round(subscribers, 50, bk_sub, bk_pub)
                for _ in range(args.rounds):
                    results["raw redis-py"] += run_round(subscribers, per_round, raw_sub, raw_pub)
                    results["brokerkit redis+pubsub"] += run_round(
                        subscribers, per_round, bk_sub, bk_pub
                    )
            finally:
                bk_close()
            for name, samples in results.items():
                median, p99 = summary(samples)
                print(f"{name:<26} {subscribers:>11} {len(samples):>8} {median:>10.1f} {p99:>9.1f}")


if __name__ == "__main__":
    main()
