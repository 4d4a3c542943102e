"""What the message hooks cost: ``python -m benchmarks.hooks --baseline DIR``.

Three sides, each in a worker process of its own and measured in alternating rounds
(:mod:`benchmarks.rounds`) on the same URLs with the same workload:

- ``baseline``: the brokerkit of ``--baseline DIR`` (a clean checkout of the commit
  before the hooks, e.g. ``git worktree add /tmp/bk-main main``), today's figures;
- ``no hook``: this tree, no plugin implementing a message hook;
- ``no-op hook``: this tree, with a plugin implementing every message hook with an
  empty body (each call goes through pluggy).

The steps are ``publish`` and ``consume_ack_p1`` (one message per call: where a
per-message cost shows most) on ``memory://``, which does no I/O, and on
``redis+stream://`` (a private redis-server). The report is the median rate of each
side and the median of per-round ratios to the baseline, written to
``benchmarks/results/hooks.md``.

On a shared machine those rates swing by a factor of several from one round to the
next, so the report also has a *micro* figure per side: the microseconds of one
``publish``, and of one publish + receive + ack, on ``memory://``, as the minimum over
15 repeats of 1,000 calls (``timeit``'s advice: the minimum is the run the machine
disturbed least), and again the minimum over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("publish", "consume_ack_p1")


class NoOp:
    """Every message hook, doing nothing."""

    def __init__(self) -> None:
        import brokerkit

        mark = brokerkit.hookimpl
        for name in (
            "brokerkit_publish_start",
            "brokerkit_publish_end",
            "brokerkit_deliver_start",
            "brokerkit_deliver_end",
            "brokerkit_on_ack",
            "brokerkit_on_nack",
            "brokerkit_on_dead_letter",
            "brokerkit_on_lease_lost",
        ):
            setattr(self, name, mark(_nothing))


def _nothing(**kwargs: Any) -> None:
    return None


def worker(urls: list[str], noop: bool, count: int) -> None:
    """Read ``url step`` lines on stdin; answer each with one round's rate as JSON."""
    from brokerkit.cli._bench import BrokerBench, Workload

    if noop:
        import brokerkit

        brokerkit.get_plugin_manager().register(NoOp())
    benches = {url: BrokerBench(url, Workload(count=count, batch=500)) for url in urls}
    for line in sys.stdin:
        url, step = line.split()
        if step == "micro":
            print(json.dumps({"micro": micro(benches[url].broker)}), flush=True)
            continue
        measured = benches[url].run(step)
        print(json.dumps({"rate": measured.rate}), flush=True)
    for bench in benches.values():
        bench.close()


def micro(broker: Any) -> list[float]:
    """Microseconds of one publish and of one publish + receive + ack: the minimum
    over 15 repeats of 1,000 calls."""
    import timeit

    body = b"x" * 100
    topic = f"micro-{os.getpid()}"
    subscription = broker.subscribe(topic)

    def publish() -> None:
        broker.publish(topic, body)

    def cycle() -> None:
        broker.publish(topic, body)
        subscription.receive(0).ack()

    figures = []
    for work in (publish, cycle):
        figures.append(min(timeit.repeat(work, number=1000, repeat=15)) / 1000 * 1e6)
        broker.purge(topic)
    subscription.close()
    return figures


class Worker:
    def __init__(self, name: str, pythonpath: Path, urls: list[str], noop: bool, count: int):
        self.name = name
        args = [sys.executable, str(Path(__file__).resolve()), "--worker", "--count", str(count)]
        args += ["--noop"] * noop + [arg for url in urls for arg in ("--url", url)]
        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def run(self, url: str, step: str) -> float:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{url} {step}\n")
        self.process.stdin.flush()
        return float(json.loads(self.process.stdout.readline())["rate"])

    def micro(self, url: str) -> list[float]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{url} micro\n")
        self.process.stdin.flush()
        return [float(x) for x in json.loads(self.process.stdout.readline())["micro"]]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--noop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.url, args.noop, args.count)
        return
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        urls = ["memory://bench-hooks", server.url("redis+stream")]
        sides = [Worker("no hook", ROOT, urls, False, args.count)]
        sides.append(Worker("no-op hook", ROOT, urls, True, args.count))
        if args.baseline is not None:
            sides.insert(0, Worker("baseline", args.baseline.resolve(), urls, False, args.count))
        rates: dict[tuple[str, str, str], list[float]] = {}
        micros: dict[str, list[list[float]]] = {}
        try:
            for index in range(args.rounds):
                for side in sides if index % 2 == 0 else sides[::-1]:
                    micros.setdefault(side.name, []).append(side.micro(urls[0]))
            print("micro done", file=sys.stderr, flush=True)
            for url in urls:
                for step in STEPS:
                    for index in range(args.rounds + 1):  # the first round warms up
                        order = sides if index % 2 == 0 else sides[::-1]
                        for side in order:
                            rate = side.run(url, step)
                            if index:
                                rates.setdefault((url, step, side.name), []).append(rate)
                    print(f"{url.split(':')[0]} {step} done", file=sys.stderr, flush=True)
        finally:
            for side in sides:
                side.close()
    reference = "baseline" if args.baseline is not None else "no hook"
    lines = [
        "| backend | step | side | msg/s (median) | ratio to "
        f"{reference} (median of rounds, min..max) |",
        "|---|---|---|---|---|",
    ]
    for url in urls:
        for step in STEPS:
            base = rates[(url, step, reference)]
            for side in sides:
                mine = rates[(url, step, side.name)]
                ratios = [m / b for m, b in zip(mine, base, strict=True)]
                lines.append(
                    f"| {url.split(':')[0]} | {step} | {side.name} | "
                    f"{statistics.median(mine):,.0f} | {statistics.median(ratios):.3f} "
                    f"({min(ratios):.2f}..{max(ratios):.2f}) |"
                )
    lines += [
        "",
        "| side | publish, us (min) | publish + receive + ack, us (min) | extra us vs "
        f"{reference} |",
        "|---|---|---|---|",
    ]
    best = {name: [min(run[i] for run in runs) for i in (0, 1)] for name, runs in micros.items()}
    for side in sides:
        pub, cycle = best[side.name]
        extra_pub, extra_cycle = pub - best[reference][0], cycle - best[reference][1]
        lines.append(
            f"| {side.name} | {pub:.2f} | {cycle:.2f} | {extra_pub:+.2f} / {extra_cycle:+.2f} |"
        )
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results" / "hooks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
