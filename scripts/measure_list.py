"""Throughput of redis+list next to raw redis-py, in one run, on one server.

    .venv/bin/python scripts/measure_list.py [--url redis://127.0.0.1:6379/0] [-n 20000]

Without --url it starts a private redis-server (persistence off) on a free port.
Prints messages per second for: publish_many vs one raw LPUSH of many values;
consume+ack with prefetch 1 and 100 vs raw BLMOVE + LREM (one message per
round trip, as the article's reliable queue does); and the Redis commands each
brokerkit operation sends (from INFO commandstats).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import brokerkit

BODY = b'{"orderId": 123, "userId": 456, "items": [1, 2, 3]}'


def rate(count: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def raw_round(client: redis.Redis, n: int) -> tuple[float, float]:
    queue, processing = f"measure-raw:{uuid.uuid4().hex}", f"measure-raw:{uuid.uuid4().hex}:p"

    def publish() -> None:
        for start in range(0, n, 1000):
            client.lpush(queue, *[BODY] * min(1000, n - start))

    def consume() -> None:
        for _ in range(n):
            element = client.blmove(queue, processing, 1, "RIGHT", "LEFT")
            client.lrem(processing, 1, element)

    published = rate(n, publish)
    consumed = rate(n, consume)
    client.delete(queue, processing)
    return published, consumed


def brokerkit_round(url: str, n: int, prefetch: int, batch: bool = False) -> tuple[float, float]:
    topic = f"measure.{uuid.uuid4().hex[:8]}"
    with brokerkit.connect(url) as broker:
        published = rate(n, lambda: broker.publish_many(topic, [BODY] * n))

        def consume() -> None:
            held = []
            for delivery in broker.consume(topic, prefetch=prefetch, limit=n, timeout=5):
                if not batch:
                    delivery.ack()
                    continue
                held.append(delivery)
                if len(held) == prefetch:
                    broker.ack(*held)
                    held.clear()
            if held:
                broker.ack(*held)

        consumed = rate(n, consume)
        broker.purge(topic)
    return published, consumed


def commands(client: redis.Redis, run: Callable[[], None]) -> dict[str, int]:
    """The commands ``run`` sent, by name (INFO commandstats before and after)."""

    def snapshot() -> dict[str, int]:
        stats = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    before = snapshot()
    run()
    after = snapshot()
    diff = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    diff.pop("info", None)
    return diff


def round_trips(url: str, client: redis.Redis) -> None:
    topic = f"measure.{uuid.uuid4().hex[:8]}"
    with brokerkit.connect(url) as broker:
        subscription = broker.subscribe(topic)
        subscription.receive(timeout=0)  # first fetch: registers, runs the rescue once
        print("  publish 1       :", commands(client, lambda: broker.publish(topic, BODY)))
        print(
            "  publish_many 100:",
            commands(client, lambda: broker.publish_many(topic, [BODY] * 100)),
        )
        got: list[object] = []
        print(
            "  receive, after an empty fetch:",
            commands(client, lambda: got.append(subscription.receive(1))),
        )
        print(
            "  receive, messages waiting    :",
            commands(client, lambda: got.append(subscription.receive(1))),
        )
        delivery = got[1]
        assert isinstance(delivery, brokerkit.Delivery)
        assert isinstance(got[0], brokerkit.Delivery)
        got[0].ack()
        print("  ack             :", commands(client, delivery.ack))
        broker.purge(topic)
        empty = f"{topic}.empty"
        idle = broker.subscribe(empty)
        idle.receive(timeout=0)

        def blocked_then_published() -> None:
            import threading

            def later() -> None:
                with brokerkit.connect(url) as other:
                    time.sleep(0.2)
                    other.publish(empty, BODY)

            thread = threading.Thread(target=later)
            thread.start()
            got.append(idle.receive(timeout=5))
            thread.join()

        print(
            "  receive (blocked):",
            commands(client, blocked_then_published),
            "(+1 LPUSH of the publisher)",
        )
        last = got[-1]
        assert isinstance(last, brokerkit.Delivery)
        last.ack()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a redis:// URL (default: a private redis-server)")
    parser.add_argument("-n", type=int, default=20000, help="messages per run")
    args = parser.parse_args()
    server = None
    if args.url is None:
        from tests.redis_server import RedisServer

        server = RedisServer().start()
        args.url = server.url("redis")
    try:
        client = redis.Redis.from_url(args.url)
        prefix = f"measure-{uuid.uuid4().hex[:8]}"
        list_url = args.url.replace("redis://", "redis+list://", 1)
        list_url += ("&" if "?" in list_url else "?") + f"prefix={prefix}"
        version = client.info("server")["redis_version"]
        print(f"redis-server {version}, {args.n} messages of {len(BODY)} bytes per run\n")
        raw_pub, raw_con = raw_round(client, args.n)
        bk_pub, bk_con1 = brokerkit_round(list_url, args.n, 1)
        _, bk_con100 = brokerkit_round(list_url, args.n, 100)
        _, bk_batch = brokerkit_round(list_url, args.n, 100, batch=True)
        print(f"{'':38}{'msg/s':>10}")
        print(f"{'raw redis-py LPUSH (1000 per call)':38}{raw_pub:>10,.0f}")
        print(f"{'brokerkit publish_many':38}{bk_pub:>10,.0f}")
        print(f"{'raw redis-py BLMOVE + LREM':38}{raw_con:>10,.0f}")
        print(f"{'brokerkit consume+ack, prefetch 1':38}{bk_con1:>10,.0f}")
        print(f"{'brokerkit consume+ack, prefetch 100':38}{bk_con100:>10,.0f}")
        print(f"{'  ... acked 100 per call':38}{bk_batch:>10,.0f}")
        print("\nRedis commands per operation (a script call is one EVALSHA, one round trip):")
        round_trips(list_url, client)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
