"""Measure redis+stream: round trips per operation, throughput next to raw redis-py,
and Redis memory per message.

Run from the repository root (starts a private redis-server unless --port is given)::

    .venv/bin/python scripts/measure_stream.py [--messages 20000] [--port 6379]

Round trips are counted by wrapping redis-py's ``send_packed_command``: one call
sends one command, or a whole pipeline, and waits for its replies.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
import redis.connection

sys.path.insert(0, os.getcwd())

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker

BODY = b"x" * 100
_sent = 0
_original_send = redis.connection.AbstractConnection.send_packed_command


def _counting_send(self: Any, command: Any, check_health: bool = True) -> None:
    global _sent
    _sent += 1
    _original_send(self, command, check_health)


redis.connection.AbstractConnection.send_packed_command = _counting_send  # type: ignore[method-assign]


def round_trips(action: Callable[[], object]) -> int:
    before = _sent
    action()
    return _sent - before


@contextlib.contextmanager
def server(port: int | None) -> Iterator[int]:
    if port is not None:
        yield port
        return
    from tests.redis_server import RedisServer

    with RedisServer() as private:
        yield private.port


def measure_round_trips(url: str) -> dict[str, int]:
    results: dict[str, int] = {}
    with brokerkit.connect(url, visibility_timeout=30) as broker:
        assert isinstance(broker, RedisStreamBroker)
        subscription = broker.subscribe("rt", prefetch=100)
        broker.publish("rt", BODY)  # warm up: scripts loaded, connections open
        broker.publish_many("rt-warm", [BODY, BODY])
        warm = subscription.receive(timeout=1)
        assert warm is not None
        warm.ack()
        results["publish (1 message)"] = round_trips(lambda: broker.publish("rt", BODY))
        results["publish_many (100 messages)"] = round_trips(
            lambda: broker.publish_many("rt", [BODY] * 99)
        )
        got: list[brokerkit.Delivery] = []
        results["fetch a batch of 100 (messages waiting)"] = round_trips(
            lambda: got.append(subscription.receive(timeout=1))  # type: ignore[func-returns-value,arg-type]
        )
        while len(got) < 100:
            delivery = subscription.receive(timeout=1)
            assert delivery is not None
            got.append(delivery)
        results["ack (1 delivery)"] = round_trips(lambda: got.pop().ack())
        results["ack (99 deliveries at once)"] = round_trips(lambda: broker.ack(*got))
        broker.publish("rt", BODY)
        for attempt in (1, 2):  # the first nack and extend also load their scripts
            one = subscription.receive(timeout=1)
            assert one is not None
            trips = round_trips(one.extend)
            if attempt == 2:
                results["extend (1 delivery)"] = trips
            trips = round_trips(one.nack)
            if attempt == 2:
                results["nack requeue (1 delivery)"] = trips
        again = subscription.receive(timeout=1)
        assert again is not None
        assert again.attempt == 3
        again.ack()
        results["receive on an empty topic (0.1 s)"] = round_trips(
            lambda: subscription.receive(timeout=0.1)
        )
    return results


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} msg/s"


def measure_throughput(url: str, client: redis.Redis, prefix: str, n: int) -> dict[str, str]:
    results: dict[str, str] = {}
    batch = 100
    with brokerkit.connect(url, visibility_timeout=30) as broker:
        started = time.perf_counter()
        for _ in range(n // batch):
            broker.publish_many("tp", [BODY] * batch)
        results["brokerkit publish_many (batches of 100)"] = _rate(n, time.perf_counter() - started)

        subscription = broker.subscribe("tp", prefetch=100)
        started = time.perf_counter()
        pending: list[brokerkit.Delivery] = []
        for _ in range(n):
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            pending.append(delivery)
            if len(pending) == batch:
                broker.ack(*pending)
                pending.clear()
        if pending:
            broker.ack(*pending)
        results["brokerkit consume + ack (prefetch 100, ack per 100)"] = _rate(
            n, time.perf_counter() - started
        )

        broker.publish_many("tp2", [BODY] * n)
        subscription = broker.subscribe("tp2", prefetch=100)
        started = time.perf_counter()
        for _ in range(n):
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            delivery.ack()
        results["brokerkit consume + ack (prefetch 100, ack each)"] = _rate(
            n, time.perf_counter() - started
        )

    key = f"{prefix}:raw"
    started = time.perf_counter()
    for _ in range(n // batch):
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.xadd(key, {"body": BODY})
        pipe.execute()
    results["raw redis-py XADD (pipelined, 100 per round trip)"] = _rate(
        n, time.perf_counter() - started
    )
    client.xgroup_create(key, "g", id="0")
    started = time.perf_counter()
    done = 0
    while done < n:
        reply = client.xreadgroup("g", "c", {key: ">"}, count=100, block=1000)
        entries = reply[0][1]
        client.xack(key, "g", *[entry_id for entry_id, _ in entries])
        done += len(entries)
    results["raw redis-py XREADGROUP COUNT 100 + XACK of the batch"] = _rate(
        n, time.perf_counter() - started
    )
    return results


def measure_memory(url: str, client: redis.Redis, prefix: str) -> dict[str, str]:
    n = 1000
    with brokerkit.connect(url) as broker:
        assert isinstance(broker, RedisStreamBroker)
        broker.publish_many("mem", [BODY] * n)
        ours = int(client.memory_usage(broker.stream_key("mem"), samples=0) or 0)
    raw_key = f"{prefix}:raw-mem"
    pipe = client.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd(raw_key, {"body": BODY})
    pipe.execute()
    bare = int(client.memory_usage(raw_key, samples=0) or 0)
    return {
        "brokerkit entry (bk1 header + body, 100-byte body)": f"{ours / n:.0f} bytes/message",
        "bare XADD body=<100 bytes>": f"{bare / n:.0f} bytes/message",
        "overhead of the envelope": f"{(ours - bare) / n:.0f} bytes/message",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, help="an existing Redis on 127.0.0.1 (default: start one)"
    )
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    prefix = f"measure-{uuid.uuid4().hex[:8]}"
    with server(args.port) as port:
        url = f"redis+stream://127.0.0.1:{port}/0?prefix={prefix}"
        client = redis.Redis(port=port)
        info = client.info("server")
        print(f"redis-server {info['redis_version']}, {args.messages} messages, 100-byte bodies")
        try:
            print("\nround trips")
            for name, count in measure_round_trips(url).items():
                print(f"  {name:<45} {count}")
            print("\nthroughput")
            for name, rate in measure_throughput(url, client, prefix, args.messages).items():
                print(f"  {name:<55} {rate}")
            print("\nmemory (MEMORY USAGE ... SAMPLES 0, 1000 entries)")
            for name, size in measure_memory(url, client, prefix).items():
                print(f"  {name:<50} {size}")
        finally:
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)


if __name__ == "__main__":
    main()
