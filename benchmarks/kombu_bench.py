"""kombu's Redis transport doing the same work: the library most users would pick."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from brokerkit.cli._bench import Measurement

__all__ = ["kombu_redis"]


def kombu_redis(
    redis_url: str, *, count: int, size: int, batch: int, latency_count: int
) -> list[Measurement]:
    """publish, a publish loop (kombu has no batch publish), consume+ack with
    prefetch 1 and 100, and ping-pong latency, on ``redis://`` with kombu."""
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    body = b"x" * size
    results = []

    def queue_named(name: str) -> Any:
        return Queue(name, Exchange(name, type="direct"), routing_key=name)

    with Connection(redis_url) as connection:
        channel = connection.channel()

        def publish_all(queue: Any) -> None:
            producer = Producer(channel, exchange=queue.exchange, routing_key=queue.routing_key)
            producer.declare()
            queue(channel).declare()
            for _ in range(count):
                producer.publish(
                    body, content_type="application/octet-stream", content_encoding="binary"
                )

        for step in ("publish", "publish_many"):
            queue = queue_named(f"kombubench-{secrets.token_hex(4)}")
            started = time.perf_counter()
            publish_all(queue)
            results.append(Measurement(step, count, time.perf_counter() - started))
            queue(channel).delete()

        for prefetch in (1, 100):
            queue = queue_named(f"kombubench-{secrets.token_hex(4)}")
            publish_all(queue)
            received = 0

            def on_message(body: Any, message: Any) -> None:
                nonlocal received
                message.ack()
                received += 1

            consumer_channel = connection.channel()
            with Consumer(
                consumer_channel,
                queues=[queue],
                callbacks=[on_message],
                prefetch_count=prefetch,
                accept=["application/octet-stream"],
            ):
                started = time.perf_counter()
                while received < count:
                    connection.drain_events(timeout=5)
                elapsed = time.perf_counter() - started
            results.append(Measurement(f"consume_ack_p{prefetch}", count, elapsed))
            queue(channel).delete()
            consumer_channel.close()

    results.append(_latency(redis_url, body, latency_count))
    return results


def _latency(redis_url: str, body: bytes, count: int) -> Measurement:
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    name = f"kombubench-{secrets.token_hex(4)}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    arrived = threading.Event()
    ready = threading.Event()
    stop = threading.Event()
    stamps: list[float] = []

    def consume() -> None:
        with Connection(redis_url) as connection:

            def on_message(body: Any, message: Any) -> None:
                stamps.append(time.perf_counter())
                message.ack()
                arrived.set()

            with Consumer(
                connection.channel(),
                queues=[queue],
                callbacks=[on_message],
                accept=["application/octet-stream"],
            ):
                ready.set()
                while not stop.is_set():
                    try:
                        connection.drain_events(timeout=0.5)
                    except TimeoutError:
                        continue

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(10)
    latencies = []
    with Connection(redis_url) as connection:
        producer = Producer(connection.channel(), exchange=queue.exchange, routing_key=name)
        for _ in range(count):
            arrived.clear()
            sent = time.perf_counter()
            producer.publish(
                body, content_type="application/octet-stream", content_encoding="binary"
            )
            if not arrived.wait(5):
                raise RuntimeError("kombu latency: a message did not arrive")
            latencies.append(stamps[-1] - sent)
        stop.set()
        thread.join(5)
        queue(connection.channel()).delete()
    return Measurement.of_latencies(latencies)
