"""The worker's throughput next to a hand-written consume loop, on one backend.

    python -m benchmarks.worker [--url redis+stream://...] [--count 3000] [--work-ms 1]

Publishes ``count`` messages, then consumes them all, acking each: once with a plain
``for delivery in broker.consume(...)`` loop (prefetch 8), and once with
:class:`brokerkit.Worker` at concurrency 1, 8 and 64 (default prefetch). The handler
does nothing, or sleeps ``--work-ms`` to stand for I/O (where concurrency pays).
Without ``--url`` it starts a private redis-server and uses redis+stream.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import brokerkit
from benchmarks.run import redis_at


def _loop(broker: brokerkit.Broker, topic: str, count: int, work: float) -> None:
    done = 0
    for delivery in broker.consume(topic, prefetch=8, timeout=5):
        if work:
            time.sleep(work)
        delivery.ack()
        done += 1
        if done == count:
            return
    raise RuntimeError(f"the loop got {done} of {count}")


def _worker(
    broker: brokerkit.Broker, topic: str, count: int, work: float, concurrency: int
) -> None:
    worker = brokerkit.Worker(broker)
    lock, finished = threading.Lock(), threading.Event()
    done = [0]

    @worker.handler(topic, concurrency=concurrency)
    def handle(body: object) -> None:
        if work:
            time.sleep(work)
        with lock:
            done[0] += 1
            if done[0] == count:
                finished.set()

    with worker.running():
        if not finished.wait(300):
            raise RuntimeError(f"the worker got {done[0]} of {count}")
        while worker.stats()[0].processed < count:  # the last ack
            finished.wait(0.001)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a broker URL (default: a private redis+stream)")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--work-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    work = args.work_ms / 1000
    with redis_at(args.url) as redis_url:
        url = args.url or redis_url.replace("redis://", "redis+stream://", 1)
        options = {"prefix": f"bench-worker-{uuid.uuid4().hex[:8]}"} if "redis" in url else {}
        with brokerkit.connect(url, **options) as broker:
            runs: list[tuple[str, int | None]] = [("consume loop (prefetch 8)", None)]
            runs += [(f"Worker, concurrency {n}", n) for n in (1, 8, 64)]
            for index, (label, concurrency) in enumerate(runs):
                topic = f"bench.{index}"
                if "stream" in url:
                    broker.subscribe(topic, start="earliest").close()
                broker.publish_many(topic, [{"n": n} for n in range(args.count)])
                started = time.perf_counter()
                if concurrency is None:
                    _loop(broker, topic, args.count, work)
                else:
                    _worker(broker, topic, args.count, work, concurrency)
                seconds = time.perf_counter() - started
                print(f"{label:28} {args.count / seconds:10,.0f} msg/s  ({seconds:.2f} s)")
                broker.purge(topic)


if __name__ == "__main__":
    main()
