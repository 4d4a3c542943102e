"""Run the benchmark suite: ``python -m benchmarks`` or ``python benchmarks/run.py``.

In one process, on one Redis (a private redis-server started here, or
``--redis-url``), with one message count and body size: each brokerkit Redis
backend, raw redis-py doing the same commands, and kombu's Redis transport; then
the memory backend alone. Writes ``benchmarks/results/latest.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks.raw import raw_list, raw_pubsub, raw_stream
from benchmarks.report import RAW_OF, as_json, markdown
from brokerkit.cli._bench import Measurement, bench_url
from brokerkit.exceptions import BrokerError

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def redis_at(url: str | None) -> Iterator[str]:
    """``url``, or the URL of a private redis-server started for the run."""
    if url is not None:
        yield url
        return
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        yield server.url("redis")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _profiled(name: str, enabled: bool, work: Callable[[], list[Measurement]]) -> list[Measurement]:
    if not enabled:
        return work()
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    with profiler:
        results = work()
    path = RESULTS / f"profile-{name.replace('+', '-').replace(' ', '-')}.txt"
    path.write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
    _say(f"  profile written to {path}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--count", type=int, default=5000, help="messages per step")
    parser.add_argument("--size", type=int, default=100, help="body size in bytes")
    parser.add_argument("--batch", type=int, default=500, help="publish_many batch size")
    parser.add_argument("--latency-count", type=int, default=500, help="ping-pongs")
    parser.add_argument(
        "--only", action="append", help="only these runs (redis+list, raw stream, kombu, memory...)"
    )
    parser.add_argument("--profile", action="store_true", help="pyinstrument each brokerkit run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.md/json go")
    args = parser.parse_args(argv)
    sizes = dict(
        count=args.count, size=args.size, batch=args.batch, latency_count=args.latency_count
    )

    results: dict[str, list[Measurement]] = {}
    skipped: dict[str, str] = {}
    wanted = set(args.only) if args.only else None

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    with redis_at(args.redis_url) as url:
        client_info = redis.Redis.from_url(url).info("server")
        base = url.split("://", 1)[1]
        for scheme, raw_name in RAW_OF.items():
            if want(scheme):
                _say(f"{scheme} ...")
                try:
                    results[scheme] = _profiled(
                        scheme, args.profile, lambda s=scheme: bench_url(f"{s}://{base}", **sizes)
                    )
                except BrokerError as exc:
                    skipped[scheme] = str(exc)
                    _say(f"  skipped: {exc}")
            if want(raw_name):
                _say(f"{raw_name} (redis-py) ...")
                run = {"raw list": raw_list, "raw stream": raw_stream, "raw pubsub": raw_pubsub}
                results[raw_name] = run[raw_name](lambda: redis.Redis.from_url(url), **sizes)
        if want("kombu"):
            _say("kombu (Redis transport) ...")
            try:
                from benchmarks.kombu_bench import kombu_redis

                results["kombu"] = kombu_redis(url, **sizes)
            except ImportError:
                skipped["kombu"] = 'kombu is not installed: pip install -e ".[bench]"'
                _say(f"  skipped: {skipped['kombu']}")
    if want("memory"):
        _say("memory:// ...")
        results["memory"] = _profiled(
            "memory", args.profile, lambda: bench_url("memory://", **sizes)
        )

    meta = {
        **sizes,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "redis_version": client_info.get("redis_version", "?"),
        "redis": "a private redis-server" if args.redis_url is None else "--redis-url",
        "machine": f"{platform.system()} {platform.machine()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, meta, skipped)
    (args.out / "latest.md").write_text(table, encoding="utf-8")
    (args.out / "latest.json").write_text(
        json.dumps(as_json(results, meta, skipped), indent=2) + "\n", encoding="utf-8"
    )
    print(table)
    _say(f"written to {args.out / 'latest.md'} and latest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
