"""Run the benchmark suite: ``python -m benchmarks`` or ``python benchmarks/run.py``.

In one process, on one Redis (a private redis-server started here, or
``--redis-url``), with one message count and body size: each brokerkit Redis
backend, raw redis-py doing the same commands, kombu's Redis transport and the
memory backend, measured step by step in alternating rounds (see
:mod:`benchmarks.rounds`). Writes ``benchmarks/results/latest.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks import servertime
from benchmarks.raw import RawList, RawPubsub, RawStream
from benchmarks.report import PIPELINED_LPUSH, RAW_OF, as_json, markdown
from benchmarks.rounds import Side, interleave
from brokerkit._capabilities import Capability
from brokerkit.cli._bench import STEPS, BrokerBench, Measurement, Workload
from brokerkit.exceptions import BrokerError

RESULTS = Path(__file__).resolve().parent / "results"
_RAW = {"raw list": RawList, "raw stream": RawStream, "raw pubsub": RawPubsub}


@contextlib.contextmanager
def redis_at(url: str | None) -> Iterator[str]:
    """``url``, or the URL of a private redis-server started for the run."""
    if url is not None:
        yield url
        return
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        yield server.url("redis")


def _commit() -> str:
    """The commit of the code measured, and whether brokerkit/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "brokerkit"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} with uncommitted changes to brokerkit/" if dirty else head


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _profiled(
    name: str, run: Callable[[str], Measurement], out: Path
) -> tuple[Callable[[str], Measurement], Callable[[], None]]:
    """``run`` under a pyinstrument profiler that records its rounds only, and a
    function that writes the profile (main thread only) next to the results."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    used = False

    def profiled(step: str) -> Measurement:
        nonlocal used
        used = True
        profiler.start()
        try:
            return run(step)
        finally:
            profiler.stop()

    def write() -> None:
        if not used:
            return
        path = out / f"profile-{name.replace('+', '-').replace(':', '').replace('/', '')}.txt"
        path.write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
        _say(f"  profile of {name} written to {path}")

    return profiled, write


def _mark_after_prefill(bench: BrokerBench) -> None:
    """Have a consume round's server time counted from the end of its prefill.

    brokerkit's consume round (``brokerkit.cli._bench``) prefills the topic with
    ``publish_many`` and then starts its clock; the last prefill call marks the
    start (:func:`benchmarks.servertime.mark`), as raw redis-py's and kombu's
    rounds do by hand."""
    broker = bench.broker
    if Capability.PERSISTENT not in broker.capabilities:
        return  # no prefill: a subscriber receives while the messages go out
    publish_many = broker.publish_many
    count = bench.workload.count
    sent = 0

    def marking(topic: str, payloads: Any, **options: Any) -> list[str]:
        nonlocal sent
        ids = publish_many(topic, payloads, **options)
        step = servertime.active_step()
        if step is not None and step.startswith("consume"):
            sent += len(payloads)
            if sent >= count:
                sent = 0
                servertime.mark()
        return ids

    broker.publish_many = marking  # type: ignore[method-assign,assignment]


def _pipelined_lpush(raw: RawList) -> Side:
    """The issue's raw publish_many on a list: one LPUSH per message, pipelined."""

    def run(step: str) -> Measurement:
        return raw.publish_many_pipelined()

    return Side(PIPELINED_LPUSH, run, lambda: None, frozenset({"publish_many"}))


def _sides(
    url: str, workload: Workload, want: Callable[[str], bool], profile: Path | None
) -> tuple[list[Side], dict[str, str], list[Callable[[], None]]]:
    """Every side that was asked for and could be opened; why the others could not;
    the profile writers."""
    sides: list[Side] = []
    skipped: dict[str, str] = {}
    writers: list[Callable[[], None]] = []
    base = url.split("://", 1)[1]

    def brokerkit(name: str, broker_url: str) -> None:
        try:
            bench = BrokerBench(broker_url, workload)
        except BrokerError as exc:
            skipped[name] = str(exc)
            _say(f"{name} skipped: {exc}")
            return
        _mark_after_prefill(bench)
        run: Callable[[str], Measurement] = bench.run
        if profile is not None:
            run, write = _profiled(name, run, profile)
            writers.append(write)
        sides.append(Side(name, run, bench.close))

    for scheme, raw_name in RAW_OF.items():
        if want(scheme):
            brokerkit(scheme, f"{scheme}://{base}")
        if want(raw_name):
            raw = _RAW[raw_name](lambda: redis.Redis.from_url(url), workload)
            sides.append(Side(raw_name, raw.run, raw.close))
            if isinstance(raw, RawList):
                sides.append(_pipelined_lpush(raw))
    if want("kombu"):
        try:
            from benchmarks.kombu_bench import KombuBench

            kombu = KombuBench(url, workload)
            sides.append(Side("kombu", kombu.run, kombu.close))
        except ImportError as exc:
            skipped["kombu"] = f"{exc} (the bench group has it: pip install -e . --group bench)"
            _say(f"kombu skipped: {skipped['kombu']}")
    if want("memory"):
        brokerkit("memory", "memory://")
    return sides, skipped, writers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--count", type=int, default=1000, help="messages per round")
    parser.add_argument("--size", type=int, default=100, help="body size in bytes")
    parser.add_argument("--batch", type=int, default=500, help="publish_many batch size")
    parser.add_argument("--latency-count", type=int, default=200, help="ping-pongs per round")
    parser.add_argument("--rounds", type=int, default=11, help="measured rounds per step and side")
    parser.add_argument("--warmup", type=int, default=1, help="discarded rounds before them")
    parser.add_argument(
        "--step", action="append", choices=STEPS, help="only these steps (default: all)"
    )
    parser.add_argument(
        "--only",
        action="append",
        help="only these sides (redis+list, raw stream, kombu, memory...)",
    )
    parser.add_argument("--profile", action="store_true", help="pyinstrument each brokerkit side")
    parser.add_argument(
        "--no-server-time",
        dest="server_time",
        action="store_false",
        help="do not measure Redis server time (INFO commandstats) around each round",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.md/json go")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be 1 or more and --warmup 0 or more")
    workload = Workload(
        count=args.count, size=args.size, batch=args.batch, latency_count=args.latency_count
    )
    wanted = set(args.only) if args.only else None
    steps = [s for s in STEPS if not args.step or s in args.step]

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    began = time.perf_counter()
    with redis_at(args.redis_url) as url:
        server: dict[str, Any] = redis.Redis.from_url(url).info("server")
        sides, skipped, writers = _sides(url, workload, want, args.out if args.profile else None)
        meter = servertime.ServerMeter(url) if args.server_time else None
        try:
            run = interleave(
                sides, steps, rounds=args.rounds, warmup=args.warmup, say=_say, meter=meter
            )
        finally:
            if meter is not None:
                meter.close()
    args.out.mkdir(parents=True, exist_ok=True)
    for write in writers:
        write()
    skipped.update(run.skipped)
    meta = {
        "count": workload.count,
        "size": workload.size,
        "batch": workload.batch,
        "latency_count": workload.latency_count,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "ratio": "median of per-round ratios (sides measured back to back in each round)",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "redis_version": server.get("redis_version", "?"),
        "redis": "a private redis-server" if args.redis_url is None else "--redis-url",
        "machine": f"{platform.system()} {platform.machine()}",
        "commit": _commit(),
        "seconds": round(time.perf_counter() - began, 1),
    }
    server_times = run.server if args.server_time else None
    table = markdown(run.rounds, meta, skipped, server_times)
    (args.out / "latest.md").write_text(table, encoding="utf-8")
    (args.out / "latest.json").write_text(
        json.dumps(as_json(run.rounds, meta, skipped, server_times), indent=2) + "\n",
        encoding="utf-8",
    )
    print(table)
    _say(f"written to {args.out / 'latest.md'} and latest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
