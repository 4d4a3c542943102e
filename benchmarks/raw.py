"""Raw redis-py doing the Redis commands each brokerkit backend does: the limit for
a Python client on this machine.

Each class measures one round of one step per :meth:`~RawBench.run` call, with
the same :class:`~brokerkit.cli._bench.Workload` (message count, body size,
batch size) as brokerkit's rounds, on a fresh key deleted afterwards.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks import servertime
from brokerkit.cli._bench import Measurement, Workload, check_steps

__all__ = ["RawBench", "RawList", "RawPubsub", "RawStream"]

#: Makes a new redis-py client (typed loosely: redis-py's command stubs disagree
#: with its replies under RESP2).
Client = Callable[[], Any]


def _key(kind: str) -> str:
    return f"rawbench:{kind}:{secrets.token_hex(4)}"


def _timed(step: str, count: int, work: Callable[[], object]) -> Measurement:
    started = time.perf_counter()
    work()
    return Measurement(step, count, time.perf_counter() - started)


def _latency(
    count: int,
    publish: Callable[[], object],
    receive_one: Callable[[], Any],
    settle: Callable[[Any], object],
) -> Measurement:
    """Ping-pong, as brokerkit's latency step: publish one, a blocked consumer gets
    it (``receive_one`` returns it, or ``None`` after at most a second), stamps
    its arrival, then settles it. The first ping only makes sure the consumer is
    waiting and is not counted."""
    stop = threading.Event()
    arrived = threading.Event()
    stamps: list[float] = []

    def consume() -> None:
        while not stop.is_set():
            got = receive_one()
            if got is None:
                continue
            stamps.append(time.perf_counter())
            arrived.set()
            settle(got)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    latencies = []
    try:
        for n in range(count + 1):
            arrived.clear()
            sent = time.perf_counter()
            publish()
            if not arrived.wait(5):
                raise RuntimeError(f"raw latency: message {n} did not arrive within 5 s")
            if n:
                latencies.append(stamps[-1] - sent)
    finally:
        stop.set()
        publish()  # wake the consumer so that it sees stop
        thread.join(5)
    return Measurement.of_latencies(latencies)


class RawBench:
    """One redis-py client, open for any number of rounds of any step."""

    def __init__(self, client: Client, workload: Workload) -> None:
        self.client = client
        self.workload = workload
        self.r: Any = client()
        self.body = workload.body

    def run(self, step: str) -> Measurement:
        """Measure one round of ``step``."""
        check_steps([step])
        if step == "latency":
            return self.latency()
        if step.startswith("consume_ack_p"):
            return self.consume(step, int(step.removeprefix("consume_ack_p")))
        return getattr(self, step)()  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the client."""
        self.r.close()

    def publish(self) -> Measurement:
        raise NotImplementedError

    def publish_many(self) -> Measurement:
        raise NotImplementedError

    def consume(self, step: str, prefetch: int) -> Measurement:
        raise NotImplementedError

    def latency(self) -> Measurement:
        raise NotImplementedError

    def _pipelined(self, command: str, key: str, value: object) -> None:
        """``count`` commands ``command key value``, one pipeline per batch."""
        for n in self.workload.batches():
            pipe = self.r.pipeline(transaction=False)
            add = getattr(pipe, command)
            for _ in range(n):
                add(key, value)
            pipe.execute()


class RawList(RawBench):
    """LPUSH; one LPUSH of all a batch's values (what redis+list sends); BLMOVE +
    LREM one at a time; 100 pipelined LMOVE + their LREM pipelined.

    :meth:`publish_many_pipelined` is the issue's "pipelined LPUSH": one LPUSH
    per message, a pipeline per batch.
    """

    def publish(self) -> Measurement:
        key, body, lpush = _key("list"), self.body, self.r.lpush
        count = self.workload.count
        result = _timed("publish", count, lambda: [lpush(key, body) for _ in range(count)])
        self.r.delete(key)
        return result

    def publish_many(self) -> Measurement:
        key, lpush = _key("list"), self.r.lpush
        batches = [[self.body] * n for n in self.workload.batches()]
        result = _timed(
            "publish_many", self.workload.count, lambda: [lpush(key, *b) for b in batches]
        )
        self.r.delete(key)
        return result

    def publish_many_pipelined(self) -> Measurement:
        key = _key("list")
        result = _timed(
            "publish_many", self.workload.count, lambda: self._pipelined("lpush", key, self.body)
        )
        self.r.delete(key)
        return result

    def consume(self, step: str, prefetch: int) -> Measurement:
        key = _key("list")
        processing = key + ":processing"
        count, r = self.workload.count, self.r
        self._pipelined("lpush", key, self.body)

        def one_at_a_time() -> None:
            for _ in range(count):
                value = r.blmove(key, processing, 1, "RIGHT", "LEFT")
                r.lrem(processing, 1, value)

        def batched() -> None:
            done = 0
            while done < count:
                pipe = r.pipeline(transaction=False)
                for _ in range(min(prefetch, count - done)):
                    pipe.lmove(key, processing, "RIGHT", "LEFT")
                values = [v for v in pipe.execute() if v is not None]
                pipe = r.pipeline(transaction=False)
                for value in values:
                    pipe.lrem(processing, 1, value)
                pipe.execute()
                done += len(values)

        servertime.mark()  # the prefill is not part of the round's server time
        result = _timed(step, count, one_at_a_time if prefetch == 1 else batched)
        r.delete(key, processing)
        return result

    def latency(self) -> Measurement:
        key = _key("list")
        processing = key + ":processing"
        consumer: Any = self.client()
        body = self.body
        try:
            return _latency(
                self.workload.latency_count,
                lambda: self.r.lpush(key, body),
                lambda: consumer.blmove(key, processing, 1, "RIGHT", "LEFT"),
                lambda value: consumer.lrem(processing, 1, value),
            )
        finally:
            consumer.close()
            self.r.delete(key, processing)


class RawStream(RawBench):
    """XADD; pipelined XADD; XREADGROUP COUNT 1 + XACK; XREADGROUP COUNT 100 + one
    XACK of the ids it read."""

    def publish(self) -> Measurement:
        key, fields, xadd = _key("stream"), {"d": self.body}, self.r.xadd
        count = self.workload.count
        result = _timed("publish", count, lambda: [xadd(key, fields) for _ in range(count)])
        self.r.delete(key)
        return result

    def publish_many(self) -> Measurement:
        key = _key("stream")
        result = _timed(
            "publish_many",
            self.workload.count,
            lambda: self._pipelined("xadd", key, {"d": self.body}),
        )
        self.r.delete(key)
        return result

    def consume(self, step: str, prefetch: int) -> Measurement:
        key, count, r = _key("stream"), self.workload.count, self.r
        r.xgroup_create(key, "g", id="0", mkstream=True)
        self._pipelined("xadd", key, {"d": self.body})

        def read_and_ack() -> None:
            done = 0
            while done < count:
                reply = r.xreadgroup("g", "c", {key: ">"}, count=prefetch, block=1000)
                ids = [entry_id for _, entries in reply for entry_id, _ in entries]
                if ids:
                    r.xack(key, "g", *ids)
                done += len(ids)

        servertime.mark()  # the prefill is not part of the round's server time
        result = _timed(step, count, read_and_ack)
        r.delete(key)
        return result

    def latency(self) -> Measurement:
        key, body = _key("stream"), self.body
        self.r.xgroup_create(key, "g", id="$", mkstream=True)
        consumer: Any = self.client()

        def receive_one() -> list[Any] | None:
            reply = consumer.xreadgroup("g", "c", {key: ">"}, count=1, block=1000)
            ids = [entry_id for _, entries in reply for entry_id, _ in entries]
            return ids or None

        try:
            return _latency(
                self.workload.latency_count,
                lambda: self.r.xadd(key, {"d": body}),
                receive_one,
                lambda ids: consumer.xack(key, "g", *ids),
            )
        finally:
            consumer.close()
            self.r.delete(key)


class RawPubsub(RawBench):
    """PUBLISH; pipelined PUBLISH; a subscriber's receive rate while pipelined
    PUBLISHes go out (both consume steps); ping-pong latency."""

    def publish(self) -> Measurement:
        channel, body, publish = _key("pubsub"), self.body, self.r.publish
        count = self.workload.count
        return _timed("publish", count, lambda: [publish(channel, body) for _ in range(count)])

    def publish_many(self) -> Measurement:
        channel = _key("pubsub")
        return _timed(
            "publish_many",
            self.workload.count,
            lambda: self._pipelined("publish", channel, self.body),
        )

    def consume(self, step: str, prefetch: int) -> Measurement:
        channel, count = _key("pubsub"), self.workload.count
        subscriber = _subscribed(self.client, channel)
        received = 0
        finished = threading.Event()

        def listen() -> None:
            nonlocal received
            try:
                while received < count:
                    if subscriber.get_message(timeout=1) is None:
                        break
                    received += 1
            finally:
                finished.set()

        started = time.perf_counter()
        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        self._pipelined("publish", channel, self.body)
        finished.wait(30)
        elapsed = time.perf_counter() - started
        thread.join(5)
        subscriber.close()
        if received < count:
            raise RuntimeError(f"raw pubsub: received {received} of {count}")
        return Measurement(step, count, elapsed)

    def latency(self) -> Measurement:
        channel, body = _key("pubsub"), self.body
        subscriber = _subscribed(self.client, channel)
        try:
            return _latency(
                self.workload.latency_count,
                lambda: self.r.publish(channel, body),
                lambda: subscriber.get_message(timeout=1),
                lambda _: None,
            )
        finally:
            subscriber.close()


def _subscribed(client: Client, channel: str) -> Any:
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
