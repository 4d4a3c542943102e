"""Body sizes (issue 18): the server time of fetching 100 bodies, brokerkit against
the raw commands that read the same elements, and consume+ack throughput by size.

*Fetch*: per body size, in alternating rounds, each side fetches ``fetches``
batches of 100 prefilled messages; the server time of each fetch is the sum of its
top-level commands' durations (``INFO commandstats``; a script whole, the commands it
ran not again, told apart by the SLOWLOG of a warm-up round), the ack that follows
left out. Beside it, the server's CPU in the same window (``INFO cpu``, the main
thread: the commands and what Redis spends around them, reading each request and
writing each reply, less what an empty window costs):

- ``redis+list``: a subscription with prefetch 100 (its fetch script, after a
  ``BLMOVE`` when it was idle); raw: 100 pipelined ``LMOVE`` to a processing list
  (``raw LMOVE x100``), or one ``LRANGE`` of the 100 elements (``raw LRANGE 100``,
  which leases nothing);
- ``redis+stream``: a subscription with prefetch 100 (``XREADGROUP COUNT 100``, or
  its fetch script when it looks for entries to reclaim); raw: ``XREADGROUP COUNT 100``.

The target: brokerkit's fetch at most 1.5x the raw one's server time (the commands'
time; a script's time counts every command it runs with the call's overhead, where
a top-level command's dispatch counts nowhere, so the CPU is the fuller measure of
what each costs Redis).
"""

from __future__ import annotations

import secrets
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

import brokerkit
from benchmarks.bookkeeping import delete_prefix
from benchmarks.servertime import WRAPPERS, ServerMeter, command_delta, nested_share

__all__ = ["FETCH_SIDES", "FetchResult", "fetch_rounds"]

#: The sides of the fetch comparison, and the raw side each brokerkit one is held to.
FETCH_SIDES = ("redis+list", "raw LMOVE x100", "raw LRANGE 100", "redis+stream", "raw XREADGROUP")
RAW_FOR = {"redis+list": ("raw LMOVE x100", "raw LRANGE 100"), "redis+stream": ("raw XREADGROUP",)}
BATCH = 100


@dataclass
class FetchResult:
    """Per side: the mean server us of a fetch of 100 in each round (its commands'
    time, and the server's CPU), and the commands (or scripts) that made up the
    fetches, with their us per fetch."""

    size: int
    fetches: int
    rounds: dict[str, list[float]] = field(default_factory=dict)
    commands: dict[str, dict[str, float]] = field(default_factory=dict)
    #: per side, the main thread's CPU us per fetch in each round: the commands and
    #: what Redis spends around them (reading requests, writing replies)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def ratio(self, side: str, raw: str, *, cpu: bool = False) -> tuple[float, float, float] | None:
        """Median (min, max) of per-round ratios side / raw, of the commands' time
        (or with ``cpu`` of the server's CPU)."""
        by = self.cpu if cpu else self.rounds
        pairs = [a / b for a, b in zip(by.get(side, []), by.get(raw, []), strict=False) if b > 0]
        if not pairs:
            return None
        return statistics.median(pairs), min(pairs), max(pairs)


class _Window:
    """The server time of the commands sent between :meth:`start` and :meth:`stop`:
    ``INFO commandstats`` deltas, each command's time inside scripts left out by its
    share in the side's warm-up round, when the SLOWLOG logs every command (as
    :class:`~benchmarks.servertime.ServerMeter` does). The measured rounds run with the
    SLOWLOG off: logging each command a script runs lands in the script's time (about
    half a microsecond a command: redis+list's fetch script measured 57-62 us with
    it, 50-54 without), where a top-level command's entry is written after its time
    is taken."""

    def __init__(self, meter: ServerMeter, baseline: float = 0.0) -> None:
        self.meter = meter
        #: while True (the warm-up round), the SLOWLOG tells where each command ran
        self.attributing = True
        #: the CPU us of a window with nothing in it (the snapshots' own share)
        self.baseline = baseline
        self.by: dict[str, float] = {}
        self._cpu: list[float] = []
        self._split: dict[str, tuple[int, int]] = {}
        self._scripts: dict[str, tuple[int, int]] = {}
        self._start: Any = None

    def start(self) -> None:
        if self.attributing:
            self.meter.r.execute_command("SLOWLOG", "RESET")
        self._start = self.meter.snapshot()

    def stop(self) -> float:
        end = self.meter.snapshot(cpu_first=True)
        self._cpu.append(end.cpu_us - self._start.cpu_us - self.baseline)
        delta = command_delta(self._start, end)
        if self.attributing:
            usec, scripts = self.meter.split_usec()
            for name, (top, inside) in usec.items():
                old = self._split.get(name, (0, 0))
                self._split[name] = (old[0] + top, old[1] + inside)
            for name, (calls, us) in scripts.items():
                old = self._scripts.get(name, (0, 0))
                self._scripts[name] = (old[0] + calls, old[1] + us)
        total = 0.0
        for command, (_, us) in delta.items():
            if command in WRAPPERS:  # its commands are counted on their own
                continue
            seen = self._split.get(command)
            if seen is None:  # inside a script or not: the warm-up cannot tell
                unknown = f"{command.upper()} (left out: not seen in the warm-up)"
                self.by[unknown] = self.by.get(unknown, 0.0) + us
                continue
            top = us * (1 - nested_share(seen))
            if top:
                name = self._name(command)
                self.by[name] = self.by.get(name, 0.0) + top
                total += top
        return total

    def round_cpu(self) -> float:
        """The mean CPU us of the windows since the last call."""
        cpu, self._cpu = self._cpu, []
        return statistics.mean(cpu) if cpu else 0.0

    def _name(self, command: str) -> str:
        """A command's name in the breakdown: an ``EVALSHA`` by the scripts it ran in
        the warm-up round (all of them: the measured rounds' calls are not told apart)."""
        if command not in ("evalsha", "eval") or not self._scripts:
            return command.upper()
        return " + ".join(sorted(self._scripts))


#: One round of a side (its mean server us per fetch), and how to close the side.
_Side = tuple[Callable[[], float], Callable[[], None]]


def _broker_side(url: str, scheme: str, size: int, fetches: int, window: _Window) -> _Side:
    base = url.split("://", 1)[1]
    prefix = f"bench18f-{secrets.token_hex(3)}"
    broker = brokerkit.connect(f"{scheme}://{base}?prefix={prefix}")
    body = b"x" * size

    def round_() -> float:
        topic = f"f{secrets.token_hex(4)}"
        total = 0.0
        with broker.subscribe(topic, group="g", prefetch=BATCH) as subscription:
            subscription.receive(timeout=0)  # the first fetch's upkeep, on an empty topic
            for _ in range(fetches):
                broker.publish_many(topic, [body] * BATCH)
            for _ in range(fetches):
                # the server time of receiving 100 (redis+list takes about FETCH_BYTES
                # at most a fetch, CHUNK_BYTES a move: with 1 MB bodies, 4 a fetch)
                window.start()
                got = [subscription.receive(timeout=5) for _ in range(BATCH)]
                total += window.stop()
                if None in got:
                    raise RuntimeError(f"{scheme}: fewer than {BATCH} fetched")
                broker.ack(*got)  # type: ignore[arg-type]
        broker.purge(topic)
        return total / fetches

    def close() -> None:
        broker.close()
        delete_prefix(url, prefix)

    return round_, close


def _raw_side(url: str, side: str, size: int, fetches: int, window: _Window) -> _Side:
    r: Any = redis.Redis.from_url(url)
    body = b"x" * size

    def round_() -> float:
        key = f"bench18f-raw:{secrets.token_hex(4)}"
        processing = key + ":processing"
        total = 0.0
        if side == "raw XREADGROUP":
            r.xgroup_create(key, "g", id="0", mkstream=True)
            pipe = r.pipeline(transaction=False)
            for _ in range(fetches * BATCH):
                pipe.xadd(key, {"d": body})
            pipe.execute()
        else:
            for _ in range(fetches):
                r.lpush(key, *[body] * BATCH)
        for _ in range(fetches):
            window.start()
            if side == "raw XREADGROUP":
                reply = r.xreadgroup("g", "c", {key: ">"}, count=BATCH)
                total += window.stop()
                r.xack(key, "g", *[entry_id for _, entries in reply for entry_id, _ in entries])
            elif side == "raw LMOVE x100":
                pipe = r.pipeline(transaction=False)
                for _ in range(BATCH):
                    pipe.lmove(key, processing, "RIGHT", "LEFT")
                values = pipe.execute()
                total += window.stop()
                pipe = r.pipeline(transaction=False)
                for value in values:
                    pipe.lrem(processing, 1, value)
                pipe.execute()
            else:
                r.lrange(key, -BATCH, -1)
                total += window.stop()
                r.ltrim(key, 0, -BATCH - 1)
        r.delete(key, processing)
        return total / fetches

    return round_, r.close


def _empty_window_cpu(meter: ServerMeter) -> float:
    """The server CPU us of a window with nothing in it: the snapshots' own share."""
    empty = _Window(meter)
    empty.attributing = False
    samples = []
    for _ in range(15):
        empty.start()
        empty.stop()
        samples.append(empty.round_cpu())
    return statistics.median(samples)


def fetch_rounds(
    url: str, size: int, rounds: int = 5, say: Callable[[str], None] = print
) -> FetchResult:
    """Alternating rounds of every fetch side at ``size``-byte bodies."""
    fetches = max(1, min(5, (20 << 20) // max(size * BATCH, 1)))
    meter = ServerMeter(url)
    baseline = _empty_window_cpu(meter)
    saved = meter.r.config_get("slowlog-*")
    meter.r.config_set("slowlog-log-slower-than", 0)  # the warm-up round's attribution
    meter.r.config_set("slowlog-max-len", 10_000)
    windows = {side: _Window(meter, baseline) for side in FETCH_SIDES}
    sides: dict[str, _Side] = {}
    result = FetchResult(size, fetches)
    try:
        for side in FETCH_SIDES:
            make = _broker_side if side.startswith("redis+") else _raw_side
            sides[side] = make(url, side, size, fetches, windows[side])
        say(f"fetch of {BATCH} bodies of {size} bytes: 1 warm-up + {rounds} rounds")
        for index in range(rounds + 1):
            order = FETCH_SIDES if index % 2 == 0 else FETCH_SIDES[::-1]
            for side in order:
                if index == 0:
                    sides[side][0]()  # warm-up: connect, load scripts, attribute
                    windows[side].by.clear()
                    windows[side].round_cpu()
                    windows[side].attributing = False
                    continue
                if index == 1 and side == order[0]:
                    meter.r.config_set("slowlog-log-slower-than", -1)
                result.rounds.setdefault(side, []).append(sides[side][0]())
                result.cpu.setdefault(side, []).append(windows[side].round_cpu())
        for side, window in windows.items():
            result.commands[side] = {
                name: us / (rounds * fetches) for name, us in sorted(window.by.items())
            }
    finally:
        meter.r.config_set("slowlog-log-slower-than", saved["slowlog-log-slower-than"])
        meter.r.config_set("slowlog-max-len", saved["slowlog-max-len"])
        meter.close()
        for _, close in sides.values():
            close()
    return result
