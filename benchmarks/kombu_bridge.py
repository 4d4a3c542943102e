"""The kombu bridge next to raw py-amqp on the same RabbitMQ, as ratios.

``python -m benchmarks.kombu_bridge [--amqp-url kombu+amqp://guest:guest@127.0.0.1:5672/]``

In one process: brokerkit's ``kombu+amqp://`` (the same steps as every brokerkit
backend, :class:`~brokerkit.cli._bench.BrokerBench`) and raw py-amqp doing the same
work the way a py-amqp user would, on the same kind of queue (a quorum queue behind a
fanout exchange) with the same guarantee (publisher confirms), measured in
alternating rounds (:mod:`benchmarks.rounds`). Writes
``benchmarks/results/kombu-bridge.md``. Every exchange and queue a run declares is
deleted at its end.
"""

from __future__ import annotations

import argparse
import datetime
import secrets
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import amqp
from amqp import spec

from benchmarks.report import Spread, extra_us, ratio
from benchmarks.rounds import Side, interleave
from brokerkit.cli._bench import STEPS, BrokerBench, Measurement, Workload, percentile
from tests.kombu_rabbitmq import DEFAULT_AMQP_URL, delete_names, raw_connection

__all__ = ["RawAmqp", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
BRIDGE = "kombu+amqp"
RAW = "raw py-amqp"
_QUORUM = {"x-queue-type": "quorum"}


class _Confirms:
    """Publisher confirms counted by listeners (py-amqp reads confirms while publishing)."""

    def __init__(self, channel: Any) -> None:
        self.sent = 0
        self.pending: set[int] = set()
        channel.events["basic_ack"].add(self._done)
        channel.events["basic_nack"].add(self._done)

    def _done(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.pending -= {t for t in self.pending if t <= tag}
        else:
            self.pending.discard(tag)

    def expect(self, count: int) -> None:
        self.pending.update(range(self.sent + 1, self.sent + count + 1))
        self.sent += count


class RawAmqp:
    """py-amqp on its own: ``basic_publish`` with confirms (a batch: publish all, then
    await the confirms), ``basic_get`` + ``basic_ack`` for prefetch 1, ``basic_qos`` +
    ``basic_consume`` with one multiple-ack per batch for prefetch 100."""

    def __init__(self, url: str, workload: Workload) -> None:
        self.url = url
        self.workload = workload
        self.connection = self._connect()
        self.channel = self.connection.channel()
        self.channel.confirm_select()
        self.confirms = _Confirms(self.channel)
        self.run_id = secrets.token_hex(4)
        self.exchanges: set[str] = set()
        self.queues: set[str] = set()

    def _connect(self) -> Any:
        conninfo = raw_connection(self.url)
        connection = amqp.Connection(
            f"{conninfo.hostname}:{conninfo.port}",
            userid=conninfo.userid,
            password=conninfo.password,
            virtual_host=conninfo.virtual_host,
        )
        connection.connect()
        return connection

    def close(self) -> None:
        """Delete what the rounds declared and close the connection."""
        self.connection.close()
        delete_names(self.exchanges, self.queues)

    def run(self, step: str) -> Measurement:
        """Measure one round of ``step`` on a fresh exchange and queue."""
        name = f"bkbench-{self.run_id}-{uuid.uuid4().hex[:6]}"
        self.channel.exchange_declare(name, "fanout", durable=True, auto_delete=False)
        self.channel.queue_declare(name, durable=True, auto_delete=False, arguments=_QUORUM)
        self.channel.queue_bind(name, name)
        self.exchanges.add(name)
        self.queues.add(name)
        work = self.workload
        if step == "publish":
            started = time.perf_counter()
            for _ in range(work.count):
                self._publish(name, 1)
            return Measurement(step, work.count, time.perf_counter() - started)
        if step == "publish_many":
            started = time.perf_counter()
            for n in work.batches():
                self._publish(name, n)
            return Measurement(step, work.count, time.perf_counter() - started)
        if step.startswith("consume_ack_p"):
            for n in work.batches():
                self._publish(name, n)
            prefetch = int(step.removeprefix("consume_ack_p"))
            started = time.perf_counter()
            if prefetch == 1:
                self._get_all(name)
            else:
                self._consume_all(name, prefetch)
            return Measurement(step, work.count, time.perf_counter() - started)
        return self._latency(name)

    def _publish(self, exchange: str, count: int) -> None:
        self.confirms.expect(count)
        for _ in range(count):
            self.channel.basic_publish(
                amqp.Message(self.workload.body, delivery_mode=2), exchange=exchange
            )
        while self.confirms.pending:
            self.channel.wait([spec.Basic.Ack, spec.Basic.Nack])

    def _get_all(self, queue: str) -> None:
        for _ in range(self.workload.count):
            message = self.channel.basic_get(queue)
            if message is None:
                raise RuntimeError("raw py-amqp: the queue ran dry")
            self.channel.basic_ack(message.delivery_tag)

    def _consume_all(self, queue: str, prefetch: int) -> None:
        channel = self.connection.channel()
        channel.basic_qos(0, prefetch, False)
        tags: list[int] = []
        channel.basic_consume(queue, callback=lambda m: tags.append(m.delivery_tag))
        acked = 0
        while acked < self.workload.count:
            self.connection.drain_events(timeout=5)
            if len(tags) - acked >= prefetch or len(tags) == self.workload.count:
                channel.basic_ack(tags[-1], multiple=True)
                acked = len(tags)
        channel.close()

    def _latency(self, queue: str) -> Measurement:
        """Ping-pong against a consumer on a second connection, as brokerkit's step."""
        listener = self._connect()
        channel = listener.channel()
        channel.basic_qos(0, 1, False)
        stamps: list[float] = []
        arrived = threading.Event()
        stop = threading.Event()

        def on_message(message: Any) -> None:
            stamps.append(time.perf_counter())
            arrived.set()
            channel.basic_ack(message.delivery_tag)

        channel.basic_consume(queue, callback=on_message)

        def listen() -> None:
            while not stop.is_set():
                try:
                    listener.drain_events(timeout=0.2)
                except TimeoutError:
                    continue

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        latencies = []
        try:
            for n in range(self.workload.latency_count + 1):
                arrived.clear()
                sent = time.perf_counter()
                self._publish(queue, 1)
                if not arrived.wait(5):
                    raise RuntimeError(f"raw py-amqp latency: message {n} did not arrive")
                if n:
                    latencies.append(stamps[-1] - sent)
        finally:
            stop.set()
            thread.join(5)
            listener.close()
        latencies.sort()
        return Measurement(
            "latency",
            len(latencies),
            sum(latencies),
            p50_ms=percentile(latencies, 0.5) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
        )


def _bridge(url: str, workload: Workload) -> Side:
    bench = BrokerBench(url, workload)

    def close() -> None:
        declared = bench.broker.declared
        bench.close()
        delete_names(set(declared.exchanges), set(declared.queues))

    return Side(BRIDGE, bench.run, close)


def _table(rounds: dict[str, dict[str, list[Measurement]]], meta: str) -> str:
    names = {
        "publish": "publish (one message per call)",
        "publish_many": "publish_many (batches)",
        "consume_ack_p1": "consume+ack, prefetch 1",
        "consume_ack_p100": "consume+ack, prefetch 100",
    }
    lines = [
        "# kombu bridge vs raw py-amqp (RabbitMQ)",
        "",
        meta,
        "",
        "Each cell is the median over the rounds (lowest..highest). Throughput in messages "
        "per second; latency in ms. *vs raw* is the median of per-round ratios brokerkit / "
        "raw (latency: raw / brokerkit), so above 1 is better for brokerkit; *extra us* is "
        "what brokerkit costs more per message (latency: how much later it arrives).",
        "",
        "| step | kombu+amqp | raw py-amqp | vs raw | extra us vs raw |",
        "|---|---:|---:|---:|---:|",
    ]

    def cell(spread: Spread | None, digits: int = 0) -> str:
        if spread is None:
            return "-"
        fmt = f"{{:,.{digits}f}}"
        low, high = fmt.format(spread.low), fmt.format(spread.high)
        return f"{fmt.format(spread.median)} ({low}..{high})"

    for step, label in names.items():
        if step not in rounds.get(BRIDGE, {}):
            continue
        mine = Spread.of([m.rate for m in rounds[BRIDGE][step]])
        raw = Spread.of([m.rate for m in rounds[RAW][step]])
        lines.append(
            f"| {label} | {cell(mine)} | {cell(raw)} | "
            f"{cell(ratio(rounds, BRIDGE, RAW, step), 2)} | "
            f"{cell(extra_us(rounds, BRIDGE, RAW, step), 1)} |"
        )
    if "latency" in rounds.get(BRIDGE, {}):
        for which, label in (("p50_ms", "latency p50, ms"), ("p99_ms", "latency p99, ms")):
            mine = Spread.of([getattr(m, which) for m in rounds[BRIDGE]["latency"]])
            raw = Spread.of([getattr(m, which) for m in rounds[RAW]["latency"]])
            lines.append(
                f"| {label} | {cell(mine, 2)} | {cell(raw, 2)} | "
                f"{cell(ratio(rounds, BRIDGE, RAW, 'latency', which, inverted=True), 2)} | "
                f"{cell(extra_us(rounds, BRIDGE, RAW, 'latency', which), 1)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kombu_bridge", description=__doc__)
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="a kombu+amqp:// URL")
    parser.add_argument("--count", type=int, default=1000, help="messages per round")
    parser.add_argument("--size", type=int, default=100, help="body size in bytes")
    parser.add_argument("--batch", type=int, default=500, help="publish_many batch size")
    parser.add_argument("--latency-count", type=int, default=200, help="ping-pongs per round")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per step and side")
    parser.add_argument("--step", action="append", choices=STEPS, help="only these steps")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where kombu-bridge.md goes")
    args = parser.parse_args(argv)
    workload = Workload(
        count=args.count, size=args.size, batch=args.batch, latency_count=args.latency_count
    )
    steps = [s for s in STEPS if not args.step or s in args.step]
    prefix = f"bkbench-{secrets.token_hex(4)}"
    url = args.amqp_url + ("&" if "?" in args.amqp_url else "?") + f"prefix={prefix}"
    began = time.perf_counter()
    raw = RawAmqp(args.amqp_url, workload)
    sides = [_bridge(url, workload), Side(RAW, raw.run, raw.close)]
    run = interleave(sides, steps, rounds=args.rounds, warmup=1)
    if run.skipped:
        print(f"skipped: {run.skipped}", file=sys.stderr)
        return 1
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"1 warm-up + {args.rounds} measured rounds per step and side, alternating; a round "
        f"is {workload.count} messages of {workload.size} bytes (batches of {workload.batch}) "
        f"or {workload.latency_count} ping-pongs; quorum queues, publisher confirms, "
        f"{date}, {time.perf_counter() - began:.0f} s. "
        f"Command: `python -m benchmarks.kombu_bridge --rounds {args.rounds}`."
    )
    table = _table(run.rounds, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kombu-bridge.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
