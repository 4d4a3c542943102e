"""Redis's instructions per message, counted by callgrind: ``python -m
benchmarks.instructions``.

Time on this kind of machine swings by a factor of three between hours (a virtual
machine's two cores, shared), and a side that copies more or runs more Lua swings
more than its raw baseline. An instruction count does not swing: a private
redis-server runs under ``valgrind --tool=callgrind --toggle-collect=call``, which
counts only what its command handler ``call`` executes (scripts whole, with the
commands they run; not the socket reads and writes, nor the idle loop), and each
side's round is counted from the end of its prefill (the counters are zeroed where
:func:`benchmarks.servertime.mark` is called) to the end of the round. The steps are
consume+ack with prefetch 100 (``consume_ack_p100``) per body size, and a single
``publish``; the sides are brokerkit's Redis backends and raw redis-py's list and
stream. Needs valgrind (Debian's package); a round takes 10x its usual time or more
(bodies of 100 KB and up are too slow for raw redis-py's socket timeout).

Instructions are not time: valgrind counts a ``rep movsb`` copy once per byte,
where the CPU moves 32 or more bytes a cycle, so a side that copies a body more
often is overweighted at big bodies; at 100 B the counts track the server's CPU.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rounds import interleave
from benchmarks.run import _commit, _say, _sides
from benchmarks.servertime import ServerMeter, ServerTime
from brokerkit.cli._bench import Workload

SIDES = ("redis+list", "redis+stream", "raw list", "raw stream")


def totals(dump: str) -> int:
    """The instructions a callgrind dump counted (its ``totals:`` or ``summary:``
    line), 0 for a dump with neither."""
    for line in dump.splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    return 0


class CallgrindMeter(ServerMeter):
    """A :class:`ServerMeter` that also counts the instructions of each round on a
    redis-server running under callgrind (process ``pid``, dumps in ``directory``).
    With ``keep``, each round's dump is kept there as ``<side>.<step>.<round>.out``
    (rounds from 1, the warm-up's included), for ``callgrind_annotate``."""

    def __init__(self, url: str, pid: int, directory: Path, keep: Path | None = None) -> None:
        super().__init__(url)
        self.pid = pid
        self.directory = directory
        self.keep = keep
        #: (side, step) -> instructions per message, a round each
        self.counts: dict[tuple[str, str], list[float]] = {}

    def _control(self, *args: str) -> None:
        done = subprocess.run(
            ["callgrind_control", *args, str(self.pid)], capture_output=True, text=True
        )
        if "OK." not in done.stdout:  # it exits 0 even when it reached nothing
            raise RuntimeError(f"callgrind_control {' '.join(args)}: {done.stdout}{done.stderr}")

    def mark(self) -> None:
        super().mark()
        self._control("--zero")

    def end(self, messages: int) -> ServerTime:
        before = set(self.directory.iterdir())
        self._control("--dump")
        dumps = set(self.directory.iterdir()) - before
        if len(dumps) != 1:
            raise RuntimeError(f"callgrind_control --dump {self.pid} wrote {len(dumps)} files")
        (dump,) = dumps
        counted = totals(dump.read_text())
        counts = self.counts.setdefault(self._side, [])
        counts.append(counted / max(messages, 1))
        if self.keep is None:
            dump.unlink()
        else:
            side, step = self._side
            self.keep.mkdir(parents=True, exist_ok=True)
            name = f"{side.replace(' ', '-')}.{step}.{len(counts)}.out"
            shutil.move(dump, self.keep / name)
        return super().end(messages)


@contextmanager
def callgrind_server(directory: Path) -> Iterator[tuple[str, int]]:
    """A private redis-server under callgrind: its URL and its process id."""
    from tests.redis_server import RedisServer, find_redis_server

    valgrind = shutil.which("valgrind")
    if valgrind is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (Debian: apt install valgrind)")
    wrapper = directory / "redis-server"
    out = shlex.quote(f"--callgrind-out-file={directory}/callgrind.out.%p")
    wrapper.write_text(
        f"#!/bin/sh\nexec {shlex.quote(valgrind)} --tool=callgrind --toggle-collect=call "
        f'{out} {shlex.quote(find_redis_server())} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    saved = os.environ.get("BROKERKIT_REDIS_SERVER")
    os.environ["BROKERKIT_REDIS_SERVER"] = str(wrapper)
    # no SLOWLOG but in the meter's attribution rounds: a command slower than the
    # threshold under valgrind would be logged, inside the instructions counted
    server = RedisServer(config=["--slowlog-log-slower-than", "-1"])
    try:
        server.start(timeout=60)
    except BaseException:
        server.stop()
        raise
    finally:
        if saved is None:
            del os.environ["BROKERKIT_REDIS_SERVER"]
        else:
            os.environ["BROKERKIT_REDIS_SERVER"] = saved
    try:
        assert server.process is not None
        yield server.url("redis"), server.process.pid
    finally:
        server.stop()


def measure(
    url: str,
    pid: int,
    directory: Path,
    steps: Sequence[str],
    size: int,
    count: int,
    keep: Path | None = None,
) -> dict[str, dict[str, float]]:
    """side -> step -> instructions per message (the median of 3 rounds after a
    warm-up); with ``keep``, every round's dump is kept there (see
    :class:`CallgrindMeter`)."""
    count = max(100, min(count, (50 << 20) // max(size, 1)))  # 50 MB a round at most
    workload = Workload(count=count, size=size, batch=min(500, count), latency_count=10)
    sides, _, _ = _sides(url, workload, lambda s: s in SIDES, None)
    meter = CallgrindMeter(url, pid, directory, keep)
    try:
        run = interleave(sides, steps, rounds=3, warmup=1, say=_say, meter=meter)
    finally:
        meter.close()
    result: dict[str, dict[str, float]] = {}
    for (side, step), counts in meter.counts.items():
        if side in run.skipped:  # dropped part-way (interleave said why)
            continue
        measured = sorted(counts[1:])  # the first is the warm-up round (SLOWLOG on)
        if measured:
            result.setdefault(side, {})[step] = measured[len(measured) // 2]
    return result


def table(results: dict[int, dict[str, dict[str, float]]], steps: Sequence[str]) -> list[str]:
    """The markdown table: instructions per message by body size, side and step, and
    each brokerkit side's ratio to raw redis-py's stream."""
    lines = [
        "| body bytes | side | " + " | ".join(steps) + " | vs raw stream |",
        "|---:|---|" + "---:|" * len(steps) + "---:|",
    ]
    for size, by_side in results.items():
        raw = by_side.get("raw stream", {})
        for side, counts in by_side.items():
            cells = [f"{counts[s]:,.0f}" if s in counts else "-" for s in steps]
            ratios = [f"{counts[s] / raw[s]:.2f}" for s in steps if raw.get(s) and s in counts]
            ratio = "-" if side == "raw stream" else ", ".join(ratios) or "-"
            lines.append(f"| {size:,} | {side} | " + " | ".join(cells) + f" | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,10000", help="body sizes, comma-separated")
    parser.add_argument("--count", type=int, default=2000, help="messages per round")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each round's callgrind dump in this directory, a folder a body size "
        "(for callgrind_annotate --inclusive=yes)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = ["consume_ack_p100", "publish"]
    print(f"Redis instructions per message (callgrind), brokerkit at {_commit()}:")
    with tempfile.TemporaryDirectory(prefix="bk-callgrind-") as name:
        directory = Path(name)
        with callgrind_server(directory) as (url, pid):
            for size in sizes:  # each size's table as soon as it is measured
                _say(f"body {size} B")
                keep = None if args.keep is None else args.keep / str(size)
                measured = {size: measure(url, pid, directory, steps, size, args.count, keep)}
                print("\n" + "\n".join(table(measured, steps)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
