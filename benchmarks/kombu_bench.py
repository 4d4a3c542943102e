"""kombu's Redis transport doing the same work: the library most users would pick.

:class:`KombuBench` measures one round of one step per :meth:`~KombuBench.run`
call, with the same workload as brokerkit's and raw redis-py's rounds.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from benchmarks import servertime
from brokerkit.cli._bench import Measurement, Workload, check_steps

__all__ = ["KombuBench"]

_BINARY = {"content_type": "application/octet-stream", "content_encoding": "binary"}


class KombuBench:
    """One kombu connection on ``redis://``: publish, a publish loop (kombu has no
    batch publish), consume+ack with ``prefetch_count`` 1 and 100 (kombu acks one
    message at a time), and ping-pong latency. Each round uses a fresh queue,
    deleted afterwards.

    :raises ImportError: kombu is not installed.
    """

    def __init__(self, redis_url: str, workload: Workload) -> None:
        self.url = redis_url
        self.workload = workload
        self.connection = _kombu().Connection(redis_url)
        self.channel = self.connection.channel()

    def close(self) -> None:
        """Close the connection."""
        self.channel.close()
        self.connection.close()

    def run(self, step: str) -> Measurement:
        """Measure one round of ``step``."""
        check_steps([step])
        queue = _queue(f"kombubench-{secrets.token_hex(4)}")
        try:
            if step == "latency":
                return _latency(self.url, queue, self.workload)
            if step.startswith("consume_ack_p"):
                return self._consume(queue, step, int(step.removeprefix("consume_ack_p")))
            started = time.perf_counter()
            self._publish_all(queue)
            return Measurement(step, self.workload.count, time.perf_counter() - started)
        finally:
            queue(self.channel).delete()

    def _publish_all(self, queue: Any) -> None:
        producer = _kombu().Producer(
            self.channel, exchange=queue.exchange, routing_key=queue.routing_key
        )
        producer.declare()
        queue(self.channel).declare()
        body = self.workload.body
        for _ in range(self.workload.count):
            producer.publish(body, **_BINARY)

    def _consume(self, queue: Any, step: str, prefetch: int) -> Measurement:
        count = self.workload.count
        self._publish_all(queue)
        received = 0

        def on_message(body: Any, message: Any) -> None:
            nonlocal received
            message.ack()
            received += 1

        channel = self.connection.channel()
        try:
            with _kombu().Consumer(
                channel,
                queues=[queue],
                callbacks=[on_message],
                prefetch_count=prefetch,
                accept=["application/octet-stream"],
            ):
                servertime.mark()  # the prefill is not part of the round's server time
                started = time.perf_counter()
                while received < count:
                    self.connection.drain_events(timeout=5)
                elapsed = time.perf_counter() - started
        finally:
            channel.close()
        return Measurement(step, count, elapsed)


def _kombu() -> Any:
    """The kombu module (untyped; imported on first use)."""
    import kombu

    return kombu


def _queue(name: str) -> Any:
    kombu = _kombu()
    return kombu.Queue(name, kombu.Exchange(name, type="direct"), routing_key=name)


def _latency(redis_url: str, queue: Any, work: Workload) -> Measurement:
    """Ping-pong through ``queue``; the first ping is not counted."""
    kombu = _kombu()
    arrived = threading.Event()
    ready = threading.Event()
    stop = threading.Event()
    stamps: list[float] = []

    def consume() -> None:
        with kombu.Connection(redis_url) as connection:

            def on_message(body: Any, message: Any) -> None:
                stamps.append(time.perf_counter())
                arrived.set()
                message.ack()

            with kombu.Consumer(
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
    if not ready.wait(10):
        raise RuntimeError("kombu latency: the consumer did not start within 10 s")
    latencies = []
    body = work.body
    with kombu.Connection(redis_url) as connection:
        producer = kombu.Producer(
            connection.channel(), exchange=queue.exchange, routing_key=queue.routing_key
        )
        try:
            for n in range(work.latency_count + 1):
                arrived.clear()
                sent = time.perf_counter()
                producer.publish(body, **_BINARY)
                if not arrived.wait(5):
                    raise RuntimeError(f"kombu latency: message {n} did not arrive within 5 s")
                if n:
                    latencies.append(stamps[-1] - sent)
        finally:
            stop.set()
            thread.join(5)
    return Measurement.of_latencies(latencies)
