"""Raw redis-py doing the Redis commands each brokerkit backend does: the limit for
a Python client on this machine."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

import redis

from brokerkit.cli._bench import Measurement

__all__ = ["raw_list", "raw_pubsub", "raw_stream"]

Client = Callable[[], "redis.Redis[bytes]"]


def _key(kind: str) -> str:
    return f"rawbench:{kind}:{secrets.token_hex(4)}"


def _timed(step: str, count: int, work: Callable[[], None]) -> Measurement:
    started = time.perf_counter()
    work()
    return Measurement(step, count, time.perf_counter() - started)


def _batches(count: int, batch: int) -> list[int]:
    return [min(batch, count - start) for start in range(0, count, batch)]


def _latency(
    count: int, publish: Callable[[], None], wait_one: Callable[[threading.Event], None]
) -> Measurement:
    """Ping-pong, as brokerkit's latency step: publish one, a blocked consumer gets it."""
    stop = threading.Event()
    arrived = threading.Event()
    stamps: list[float] = []

    def consume() -> None:
        while not stop.is_set():
            got = threading.Event()
            wait_one(got)
            if got.is_set():
                stamps.append(time.perf_counter())
                arrived.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.2)  # let the consumer block (or subscribe) before the first message
    latencies = []
    for _ in range(count):
        arrived.clear()
        sent = time.perf_counter()
        publish()
        if not arrived.wait(5):
            raise RuntimeError("raw latency: a message did not arrive")
        latencies.append(stamps[-1] - sent)
    stop.set()
    publish()  # wake the consumer so it sees stop
    thread.join(5)
    return Measurement.of_latencies(latencies)


def raw_list(
    client: Client, *, count: int, size: int, batch: int, latency_count: int
) -> list[Measurement]:
    """LPUSH; pipelined LPUSH; BLMOVE + LREM one at a time; 100 LMOVE + LREM pipelined."""
    r = client()
    body = b"x" * size
    results = []
    key = _key("list")
    results.append(_timed("publish", count, lambda: [r.lpush(key, body) for _ in range(count)]))
    r.delete(key)

    def publish_many() -> None:
        for n in _batches(count, batch):
            pipe = r.pipeline(transaction=False)
            for _ in range(n):
                pipe.lpush(key, body)
            pipe.execute()

    results.append(_timed("publish_many", count, publish_many))
    processing = key + ":processing"

    def consume_one() -> None:
        for _ in range(count):
            value = r.blmove(key, processing, 1, "RIGHT", "LEFT")
            r.lrem(processing, 1, value)

    results.append(_timed("consume_ack_p1", count, consume_one))
    publish_many()

    def consume_hundred() -> None:
        done = 0
        while done < count:
            pipe = r.pipeline(transaction=False)
            for _ in range(min(100, count - done)):
                pipe.lmove(key, processing, "RIGHT", "LEFT")
            values = [v for v in pipe.execute() if v is not None]
            pipe = r.pipeline(transaction=False)
            for value in values:
                pipe.lrem(processing, 1, value)
            pipe.execute()
            done += len(values)

    results.append(_timed("consume_ack_p100", count, consume_hundred))
    r.delete(key, processing)
    consumer = client()

    def wait_one(got: threading.Event) -> None:
        value = consumer.blmove(key, processing, 1, "RIGHT", "LEFT")
        if value is not None:
            got.set()
            consumer.lrem(processing, 1, value)

    results.append(_latency(latency_count, lambda: r.lpush(key, body), wait_one))
    r.delete(key, processing)
    return results


def raw_stream(
    client: Client, *, count: int, size: int, batch: int, latency_count: int
) -> list[Measurement]:
    """XADD; pipelined XADD; XREADGROUP COUNT 1 + XACK; XREADGROUP COUNT 100 + one XACK."""
    r = client()
    body = b"x" * size
    results = []
    key = _key("stream")
    results.append(
        _timed("publish", count, lambda: [r.xadd(key, {"d": body}) for _ in range(count)])
    )
    r.delete(key)

    def publish_many(target: str) -> None:
        for n in _batches(count, batch):
            pipe = r.pipeline(transaction=False)
            for _ in range(n):
                pipe.xadd(target, {"d": body})
            pipe.execute()

    results.append(_timed("publish_many", count, lambda: publish_many(key)))
    for prefetch in (1, 100):
        key = _key("stream")
        r.xgroup_create(key, "g", id="0", mkstream=True)
        publish_many(key)

        def consume(stream: str = key, per_read: int = prefetch) -> None:
            done = 0
            while done < count:
                reply = r.xreadgroup("g", "c", {stream: ">"}, count=per_read, block=1000)
                ids = [entry_id for _, entries in reply for entry_id, _ in entries]
                if ids:
                    r.xack(stream, "g", *ids)
                done += len(ids)

        results.append(_timed(f"consume_ack_p{prefetch}", count, consume))
        r.delete(key)
    key = _key("stream")
    r.xgroup_create(key, "g", id="$", mkstream=True)
    consumer = client()

    def wait_one(got: threading.Event) -> None:
        reply = consumer.xreadgroup("g", "c", {key: ">"}, count=1, block=1000)
        ids = [entry_id for _, entries in reply for entry_id, _ in entries]
        if ids:
            got.set()
            consumer.xack(key, "g", *ids)

    results.append(_latency(latency_count, lambda: r.xadd(key, {"d": body}), wait_one))
    r.delete(key)
    return results


def raw_pubsub(
    client: Client, *, count: int, size: int, batch: int, latency_count: int
) -> list[Measurement]:
    """PUBLISH; pipelined PUBLISH; a subscriber's receive rate; ping-pong latency."""
    r = client()
    body = b"x" * size
    channel = _key("pubsub")
    results = [_timed("publish", count, lambda: [r.publish(channel, body) for _ in range(count)])]

    def publish_many() -> None:
        for n in _batches(count, batch):
            pipe = r.pipeline(transaction=False)
            for _ in range(n):
                pipe.publish(channel, body)
            pipe.execute()

    results.append(_timed("publish_many", count, publish_many))
    receive = _receive_rate(client, channel, publish_many, count)
    results += [
        Measurement("consume_ack_p1", count, receive),
        Measurement("consume_ack_p100", count, receive),
    ]
    subscriber = _subscribed(client, channel)

    def wait_one(got: threading.Event) -> None:
        if subscriber.get_message(timeout=1) is not None:
            got.set()

    results.append(_latency(latency_count, lambda: r.publish(channel, body), wait_one))
    subscriber.close()
    return results


def _receive_rate(
    client: Client, channel: str, publish_all: Callable[[], None], count: int
) -> float:
    subscriber = _subscribed(client, channel)
    received = 0
    finished = threading.Event()

    def listen() -> None:
        nonlocal received
        while received < count:
            if subscriber.get_message(timeout=1) is None:
                break
            received += 1
        finished.set()

    started = time.perf_counter()
    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    publish_all()
    finished.wait(30)
    elapsed = time.perf_counter() - started
    subscriber.close()
    if received < count:
        raise RuntimeError(f"raw pubsub: received {received} of {count}")
    return elapsed


def _subscribed(client: Client, channel: str) -> redis.client.PubSub:
    """A subscriber to ``channel`` that the server already counts."""
    subscriber = client().pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(channel)
    subscriber.get_message(timeout=0.5)
    probe = client()
    deadline = time.monotonic() + 5
    while probe.pubsub_numsub(channel)[0][1] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    probe.close()
    return subscriber
