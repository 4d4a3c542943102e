"""The server time of redis+list's fetch call alone, and where it goes:
``python -m benchmarks.fetchcall``.

Replays the call of a woken consumer (a ``BLMOVE`` moved one element, then the FETCH
script leases it and up to 99 more: ``"2"``, see :mod:`brokerkit.backends.redis.list.woken_async`)
on a private redis-server (or ``--redis-url``, under a prefix of its own: a server no
other client runs scripts on, whose ``EVALSHA`` calls would count), each call on
a queue of 100 fresh elements of ``--size`` bytes, and takes the script's time from
``INFO commandstats`` with the SLOWLOG off (an entry written for each command a script
runs counts in the script's time). The call is built as the consumer builds it (its
nonces, one a batch of about ``CHUNK_BYTES``; the size of the last fetch as the hint).

With ``--steps``, the script is also run cut short before each of its steps (``do
return {0} end`` inserted there), the variants alternating block by block with the
whole script: what each step adds, cold, as Redis runs a fetch between other work.
The suite's fetch part (``python -m benchmarks.issue18 --part fetch``) measures whole
fetches, which swing too much from round to round to show a change of a few
microseconds. ``--against REV`` runs the FETCH script of another commit (as that
commit's code writes it) in the same blocks, alternating with this one's, on the same
server: the way to compare two versions of the script whose calls take the same
arguments.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

import brokerkit
from benchmarks.bookkeeping import delete_prefix
from benchmarks.run import redis_at
from brokerkit.backends.redis.list import scripts
from brokerkit.backends.redis.list.plan import batches_for, new_nonces

__all__ = ["STEPS", "measure", "with_cut"]

BATCH = 100
#: Calls a block runs of one variant before the next variant's block.
BLOCK = 50
#: Where ``--steps`` cuts the script short, by the first words of the step's line:
#: the heartbeat and the check that the nonces are new, the count of returned
#: messages, the woken element, what to take, the moves, the woken element's move,
#: the leases' writes, the end.
STEPS = (
    "local fetches, proc = fetches_of(C), proc_of(C)",
    "local woke, alone, count = 0, false, nil",
    "local take, capped = 0, false",
    "local size = woke + take",
    "if woke == 1 then",
    "local deadline, tail = t + lease_ms",
    "return {size, count or false",
)


def with_cut(script: str, step: str) -> str:
    """``script`` returning ``{0}`` just before the first line that starts with
    ``step``."""
    at = script.index("\n" + step) + 1
    return script[:at] + "do return {0} end\n" + script[at:]


def script_at(rev: str) -> str:
    """The FETCH script as the brokerkit of commit ``rev`` writes it (its package
    unpacked apart and imported in a process of its own)."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev, "brokerkit"], capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12, 3.11.4 and later
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)  # this repository's own archive
        code = "import sys; from brokerkit.backends.redis.list import scripts; "
        code += "sys.stdout.write(scripts.FETCH)"
        env = {**os.environ, "PYTHONPATH": tmp}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, check=True
        )
        return done.stdout.decode()


def _variants(steps: bool, against: str | None = None) -> dict[str, str]:
    fetch = scripts.FETCH
    variants = {"whole script": fetch}
    if against is not None:
        variants[f"whole script at {against}"] = script_at(against)
    if steps:
        body = fetch.index("\nlocal FETCH_BYTES") + 1
        variants["the call and its preamble"] = fetch[:body] + "do return {0} end\n" + fetch[body:]
        for step in STEPS:
            variants[f"up to `{step[:40]}`"] = with_cut(fetch, step)
    return variants


def _caller(url: str, prefix: str, size: int) -> tuple[Callable[[str], Any], Callable[[], None]]:
    """``call(sha)``: one woken fetch of a queue of ``BATCH`` fresh elements by the
    script ``sha`` (its reply), then what it leased deleted; and ``close()``."""
    broker: Any = brokerkit.connect(f"redis+list://{url.split('://', 1)[1]}?prefix={prefix}")
    r: Any = redis.Redis.from_url(url)
    plan = broker._topic("fetchcall")
    keys, consumer = plan.keys, "c1"
    processing = keys.processing(consumer)
    body = b"x" * size
    fixed = [keys.deadlines, keys.expiry, keys.fetches(consumer), keys.consumers]

    def call(sha: str) -> Any:
        nonces = new_nonces(batches_for(BATCH, size))
        batches = [keys.batch(nonce, consumer) for nonce in nonces]
        r.lpush(keys.queue, *[body] * BATCH)
        r.lmove(keys.queue, processing, "RIGHT", "RIGHT")  # what the BLMOVE moved
        args = [*plan.common, consumer, BATCH, 30_000, nonces[0], size, "2", *nonces[1:]]
        call_keys = [*plan.keys_for([consumer]), *batches]
        reply = r.evalsha(sha, len(call_keys), *call_keys, *args)
        r.delete(keys.queue, processing, *batches, *fixed)
        return reply

    def close() -> None:
        broker.close()
        r.close()
        delete_prefix(url, prefix)

    return call, close


def measure(
    url: str, size: int, blocks: int, steps: bool = False, against: str | None = None
) -> dict[str, list[float]]:
    """Per variant, the mean server us of a call in each of its ``blocks`` blocks (the
    variants' blocks in turn, their order reversed every other time).

    :raises RuntimeError: a whole script leased fewer than ``BATCH``: it measured
        something else than a fetch."""
    variants = _variants(steps, against)
    meter: Any = redis.Redis.from_url(url)
    saved = meter.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    prefix = f"bench-fetchcall-{secrets.token_hex(3)}"
    call, close = _caller(url, prefix, size)
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        shas = [(name, meter.script_load(text)) for name, text in variants.items()]
        meter.config_set("slowlog-log-slower-than", -1)
        for block in range(blocks + 1):  # the first block warms up
            for name, sha in shas if block % 2 else shas[::-1]:
                before = meter.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
                for _ in range(BLOCK):
                    reply = call(sha)
                if name.startswith("whole script") and reply[0] != BATCH:
                    raise RuntimeError(f"fetchcall: {name} leased {reply[0]} of {BATCH}")
                after = meter.info("commandstats")["cmdstat_evalsha"]
                if block:
                    calls = int(after["calls"]) - int(before["calls"])
                    times[name].append((int(after["usec"]) - int(before["usec"])) / calls)
    finally:
        meter.config_set("slowlog-log-slower-than", saved)
        meter.close()
        close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fetchcall", description=__doc__)
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--sizes", default="100,10000", help="body sizes in bytes")
    parser.add_argument("--blocks", type=int, default=20, help=f"measured blocks of {BLOCK}")
    parser.add_argument("--steps", action="store_true", help="also cut short at each step")
    parser.add_argument("--against", metavar="REV", help="also the script of this commit")
    args = parser.parse_args(argv)
    with redis_at(args.redis_url) as url:
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            times = measure(url, size, args.blocks, args.steps, args.against)
            print(f"\n{size:,}-byte bodies: server us per call, median of {args.blocks} blocks")
            print("| variant | us (min..max) |\n|---|---:|")
            for name, values in times.items():
                spread = f"{min(values):.1f}..{max(values):.1f}"
                print(f"| {name} | {statistics.median(values):.1f} ({spread}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
