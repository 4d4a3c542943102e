"""Issue 18's measurements: ``python -m benchmarks.issue18``.

On a private redis-server (or ``--redis-url``), any of these parts (``--part``,
repeatable; default all):

- ``fetch``: the server time of a fetch of 100 bodies, brokerkit against the raw
  commands reading the same elements, per body size (``--sizes``), target <= 1.5x
  (:mod:`benchmarks.bodies`);
- ``throughput``: consume+ack with prefetch 100 per body size, redis+list and
  redis+stream against raw redis-py's list and stream, in alternating rounds, with
  the server time per message; and two design probes, no brokerkit code: raw
  redis-py consuming a list that leases by reference (:mod:`benchmarks.byref`), and
  one that leases by moves and nothing else, the floor of a list queue
  (:mod:`benchmarks.listfloor`);
- ``bookkeeping``: with ``--held`` deliveries held by one consumer (fetched 1,000 at
  a time, and one a fetch), the server time of a renewal round, an extend, an ack
  and a rescue of them all (on redis+list also of a killed consumer's), target <= 5
  ms each (:mod:`benchmarks.bookkeeping`);
- ``memory``: bytes per message waiting and in flight, target within 64 B;
- ``handback``: how long a handed-back or nacked message takes to reach a consumer
  already waiting, target 50 ms (:mod:`benchmarks.handback`);
- ``latency``: publish-to-receive at 500 messages a second to a consumer waiting in
  another process, redis+list against raw ``BLMOVE`` (target: median within 100 us)
  and redis+stream against raw ``XREADGROUP BLOCK`` (:mod:`benchmarks.paced`);
- ``scaling`` (only when asked for: about two minutes): consume+ack with 1, 2 and 4
  consumer processes, redis+list and redis+stream against raw redis-py's stream
  (:mod:`benchmarks.scaling`).

Writes ``issue18.md`` and ``issue18.json`` to ``--out`` (default
``benchmarks/results/``); a run of the scaling or the bookkeeping part alone writes
``issue18-scaling`` or ``issue18-bookkeeping`` ``.md`` and ``.json`` instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks import bodies, bookkeeping, handback, paced, scaling
from benchmarks.byref import RawListByReference
from benchmarks.listfloor import RawListByMoves
from benchmarks.report_server import cpu_cells, server_cell, server_json
from benchmarks.rounds import Side, interleave
from benchmarks.run import RESULTS, _commit, _say, _sides, redis_at
from benchmarks.servertime import ServerMeter
from brokerkit.cli._bench import Workload

PARTS = ("fetch", "throughput", "bookkeeping", "memory", "handback", "latency", "scaling")
DEFAULT_PARTS = PARTS[:-1]
_THROUGHPUT_SIDES = (
    "redis+list",
    "redis+stream",
    "raw list",
    "raw stream",
    "raw list by reference",
    "raw list by moves",
)


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def fetch_part(url: str, sizes: list[int], rounds: int, out: dict[str, Any]) -> list[str]:
    lines = [
        "## Fetch of 100 bodies: server time against the raw commands",
        "",
        "Server us per fetch of 100 (median over rounds, min..max), from INFO "
        "commandstats (top-level commands, scripts whole: a warm-up round's SLOWLOG "
        "tells which commands ran inside scripts; the measured rounds run with the "
        "SLOWLOG off, whose entries for a script's commands would count in its time); "
        "the ratio is the median of per-round ratios brokerkit / raw (target <= 1.5). "
        "The server's CPU in the same windows (INFO cpu, main thread, less an empty "
        "window's) also counts reading each request and writing each reply, which no "
        "command's time does: its ratio is the CPU one.",
        "",
        "| body bytes | side | server us per fetch | server CPU us per fetch | vs raw "
        "| what ran (us per fetch) |",
        "|---:|---|---:|---:|---|---|",
    ]
    data = []
    for size in sizes:
        result = bodies.fetch_rounds(url, size, rounds, say=_say)
        for side in bodies.FETCH_SIDES:
            ratios = []
            for raw in bodies.RAW_FOR.get(side, ()):
                r = result.ratio(side, raw)
                cpu = result.ratio(side, raw, cpu=True)
                if r is not None:
                    met = "met" if r[0] <= 1.5 else "**not met**"
                    on_cpu = f", CPU {cpu[0]:.2f}" if cpu is not None else ""
                    ratios.append(f"{r[0]:.2f} ({r[1]:.2f}..{r[2]:.2f}) of {raw}: {met}{on_cpu}")
            ran = ", ".join(f"{n} {us:.0f}" for n, us in result.commands.get(side, {}).items())
            lines.append(
                f"| {size:,} | {side} | {_spread(result.rounds.get(side, []), ',.0f')} "
                f"| {_spread(result.cpu.get(side, []), ',.0f')} "
                f"| {'; '.join(ratios) or '-'} | {ran} |"
            )
        data.append(
            {
                "size": size,
                "fetches_per_round": result.fetches,
                "rounds": result.rounds,
                "cpu_us_per_fetch": result.cpu,
                "commands_us_per_fetch": result.commands,
            }
        )
    out["fetch"] = data
    return [*lines, ""]


def throughput_part(
    url: str, sizes: list[int], rounds: int, count: int, out: dict[str, Any]
) -> list[str]:
    lines = [
        "## consume+ack, prefetch 100, by body size",
        "",
        "Messages per second (median over rounds, min..max), the median per-round ratio "
        "to raw redis-py's stream (XREADGROUP COUNT 100 + one XACK) and list (100 "
        "pipelined LMOVE + LREM), the server us per message (INFO commandstats), and "
        "the CPU us per message of the server's main thread (INFO cpu: the commands, "
        "reading requests, writing replies) and of this process (every thread): with "
        "one consumer the rate is about one over their sum, less what overlaps.",
        "",
        "| body bytes | messages per round | side | msg/s | vs raw stream | vs raw list "
        "| server us/msg | server CPU us/msg | client CPU us/msg |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    data = []
    for size in sizes:
        n = max(100, min(count, (50 << 20) // max(size, 1)))
        workload = Workload(count=n, size=size, batch=min(500, n), latency_count=10)
        sides, skipped, _ = _sides(url, workload, lambda s: s in _THROUGHPUT_SIDES, None)
        for name, probe in (
            ("raw list by reference", RawListByReference),
            ("raw list by moves", RawListByMoves),
        ):
            bench = probe(lambda: redis.Redis.from_url(url), workload)
            sides.append(Side(name, bench.run, bench.close, frozenset({"consume_ack_p100"})))
        meter = ServerMeter(url)
        try:
            run = interleave(
                sides, ["consume_ack_p100"], rounds=rounds, warmup=1, say=_say, meter=meter
            )
        finally:
            meter.close()
        step = "consume_ack_p100"
        rates = {
            s: [m.rate for m in run.rounds.get(s, {}).get(step, [])] for s in _THROUGHPUT_SIDES
        }
        for side in _THROUGHPUT_SIDES:
            cells = []
            for raw in ("raw stream", "raw list"):
                pairs = [a / b for a, b in zip(rates[side], rates[raw], strict=False) if b]
                cells.append(_spread(pairs, ".2f") if side != raw else "-")
            server_cpu, client_cpu = cpu_cells(run.server, side, step)
            lines.append(
                f"| {size:,} | {n} | {side} | {_spread(rates[side], ',.0f')} | {cells[0]} "
                f"| {cells[1]} | {server_cell(run.server, (side,), step)} | {server_cpu} "
                f"| {client_cpu} |"
            )
        data.append(
            {
                "size": size,
                "messages": n,
                "rates": rates,
                "skipped": {**skipped, **run.skipped},
                "server_time": server_json(run.server),
            }
        )
    out["throughput"] = data
    return [*lines, ""]


def bookkeeping_part(url: str, held: int, out: dict[str, Any]) -> list[str]:
    calls = bookkeeping.bookkeeping(url, held=held, say=_say)
    out["bookkeeping"] = [c.as_dict() for c in calls]
    lines = [
        f"## Bookkeeping with {held:,} deliveries held",
        "",
        "Server time from the SLOWLOG (every command logged): the worst single command "
        "of the operation (target <= 5 ms), how many commands it took and their total.",
        "",
        "| backend | prefetch | operation | commands | worst us (command) | total ms "
        "| <= 5 ms | note |",
        "|---|---:|---|---:|---:|---:|:-:|---|",
    ]
    for c in calls:
        met = "yes" if c.met else "**no**"
        lines.append(
            f"| {c.backend} | {c.prefetch:,} | {c.operation} | {c.commands} "
            f"| {c.worst_us:,} ({c.worst.replace('|', ' ')}) "
            f"| {c.total_us / 1000:.1f} | {met} | {c.note} |"
        )
    return [*lines, ""]


def memory_part(url: str, held: int, out: dict[str, Any]) -> list[str]:
    rows = bookkeeping.in_flight_memory(url, count=held)
    out["memory"] = rows
    lines = [
        f"## Memory per message, {held:,} messages of 100 bytes",
        "",
        "Bytes per message from MEMORY USAGE (SAMPLES 0) of every key of the topic; "
        "used_memory deltas (which also count client buffers) in brackets. Target: "
        "in flight within 64 B of waiting (redis+list).",
        "",
        "| side | waiting | in flight | extra | within 64 B |",
        "|---|---:|---:|---:|:-:|",
    ]
    for row in rows:
        met = "yes" if row["met"] else "**no**"
        lines.append(
            f"| {row['side']} | {row['waiting_bytes_per_message']:.0f} "
            f"({row['used_memory_waiting']:.0f}) | {row['in_flight_bytes_per_message']:.0f} "
            f"({row['used_memory_in_flight']:.0f}) | {row['extra_bytes_per_message']:+.0f} "
            f"| {met} |"
        )
    for row in rows:
        if row.get("in_flight_by_key"):
            parts = ", ".join(f"`{k}` {v:.0f}" for k, v in row["in_flight_by_key"].items())
            lines += ["", f"{row['side']} in flight, bytes per message by key: {parts}."]
    return [*lines, ""]


def handback_part(url: str, out: dict[str, Any]) -> list[str]:
    results = handback.handbacks(url, say=_say)
    out["handback"] = [r.as_dict() for r in results]
    lines = [
        "## A handed-back or nacked message reaching a consumer already waiting",
        "",
        "Milliseconds from the hand-back (a subscription holding 9 prefetched messages "
        "closes) or the nack (requeue) to the waiting consumer's first and last arrival "
        "of them (target: all within 50 ms; given up after 15 s).",
        "",
        "| backend | how | waiter's prefetch | waiter's receive timeout | arrived | first ms "
        "| last ms | <= 50 ms |",
        "|---|---|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in results:
        first = "-" if r.first_ms is None else f"{r.first_ms:,.1f}"
        last = "-" if r.last_ms is None else f"{r.last_ms:,.1f}"
        met = "yes" if r.met else "**no**"
        lines.append(
            f"| {r.backend} | {r.how} | {r.prefetch} | {r.timeout or 'none'} "
            f"| {r.arrived} of {r.messages} "
            f"| {first} | {last} | {met} |"
        )
    return [*lines, ""]


def latency_part(url: str, rounds: int, out: dict[str, Any]) -> list[str]:
    result = paced.paced(url, rounds=rounds, say=_say)
    out["latency"] = {
        "rate": result.rate,
        "per_round": result.per_round,
        "p50_us": {side: result.medians(side) for side in result.rounds},
        "p99_us": {side: result.p99s(side) for side in result.rounds},
    }
    return paced.report(result)


def scaling_part(url: str, rounds: int, out: dict[str, Any]) -> list[str]:
    results = scaling.scaling(url, rounds=rounds, say=_say)
    out["scaling"] = {
        side: {str(n): [r._asdict() for r in by_round] for n, by_round in by.items()}
        for side, by in results.items()
    }
    lines = [
        "## consume+ack with consumer processes (prefetch 100, 20,000 messages of 100 B)",
        "",
        "Messages per second over all processes (median over rounds, min..max), the "
        "median of per-round ratios to raw redis-py's stream with as many processes, and "
        "the CPU time a message (median us, user + system): the consumers' from the "
        "start to their last ack, the server's over the round. With more processes than "
        "the machine has cores, the CPU a message costs decides the rate.",
        "",
        "| processes | side | msg/s | vs raw stream | consumers' CPU us/msg "
        "| server's CPU us/msg |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n in sorted({n for by in results.values() for n in by}):
        raw = [r.rate for r in results["raw stream"].get(n, [])]
        for side in scaling.SIDES:
            rounds_of = results[side].get(n, [])
            values = [r.rate for r in rounds_of]
            pairs = [a / b for a, b in zip(values, raw, strict=False) if b]
            vs = _spread(pairs, ".2f") if side != "raw stream" else "-"
            client = statistics.median(r.client_us for r in rounds_of) if rounds_of else 0.0
            server = statistics.median(r.server_us for r in rounds_of) if rounds_of else 0.0
            lines.append(
                f"| {n} | {side} | {_spread(values, ',.0f')} | {vs} | {client:.2f} | {server:.2f} |"
            )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.issue18", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument(
        "--part", action="append", choices=PARTS, help="only these parts (default: all but scaling)"
    )
    parser.add_argument(
        "--sizes", default="100,10000,1000000", help="body sizes in bytes, comma-separated"
    )
    parser.add_argument(
        "--rounds", type=int, default=11, help="measured rounds (fetch, throughput, latency)"
    )
    parser.add_argument("--count", type=int, default=1000, help="messages per throughput round")
    parser.add_argument(
        "--scaling-rounds", type=int, default=3, help="rounds of each process count (scaling)"
    )
    parser.add_argument("--held", type=int, default=10_000, help="deliveries held (bookkeeping)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where issue18[-scaling].md/json go"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    parts = args.part or list(DEFAULT_PARTS)
    began = time.perf_counter()
    out: dict[str, Any] = {}
    lines: list[str] = []
    with redis_at(args.redis_url) as url:
        version = redis.Redis.from_url(url).info("server").get("redis_version", "?")
        runners: dict[str, Callable[[], list[str]]] = {
            "fetch": lambda: fetch_part(url, sizes, args.rounds, out),
            "throughput": lambda: throughput_part(url, sizes, args.rounds, args.count, out),
            "bookkeeping": lambda: bookkeeping_part(url, args.held, out),
            "memory": lambda: memory_part(url, args.held, out),
            "handback": lambda: handback_part(url, out),
            "latency": lambda: latency_part(url, args.rounds, out),
            "scaling": lambda: scaling_part(url, args.scaling_rounds, out),
        }
        for part in PARTS:
            if part in parts:
                _say(f"{part}:")
                lines += runners[part]()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "redis_version": version,
        "redis": "a private redis-server" if args.redis_url is None else "--redis-url",
        "commit": _commit(),
        "seconds": round(time.perf_counter() - began, 1),
        "argv": sys.argv[1:] if argv is None else argv,
    }
    head = [
        "# Issue 18: server time, body sizes, bookkeeping under load, memory, hand-backs",
        "",
        f"Redis {meta['redis_version']} on {meta['redis']}, brokerkit at {meta['commit']}, "
        f"{meta['date']}; the run took {meta['seconds']:.0f} s.",
        "",
    ]
    table = "\n".join(head + lines)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"issue18-{parts[0]}" if parts in (["scaling"], ["bookkeeping"]) else "issue18"
    (args.out / f"{stem}.md").write_text(table, encoding="utf-8")
    (args.out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, **out}, indent=2) + "\n", encoding="utf-8"
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
