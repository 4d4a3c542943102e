"""The benchmark results as JSON and as markdown tables: per-side medians with
their spread, ratios, and the issue's targets.

Every ratio is the median of per-round ratios: in round *i* the two sides were
measured back to back (see :mod:`benchmarks.rounds`), so a load swing that slows
both cancels in their ratio, and the median drops the rounds in which it hit
only one of them. ``docs/benchmarks.md`` explains the choice.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.report_server import ServerRounds, breakdown, server_cell, server_json, server_ratio
from brokerkit.cli._bench import Measurement

__all__ = [
    "PIPELINED_LPUSH",
    "RAW_OF",
    "Spread",
    "Target",
    "as_json",
    "check_targets",
    "extra_us",
    "figures",
    "markdown",
    "paired",
    "ratio",
    "round_trip_us",
]

#: side -> step -> one measurement per measured round.
Rounds = Mapping[str, Mapping[str, Sequence[Measurement]]]

#: Which raw redis-py run each brokerkit backend is measured against.
RAW_OF = {"redis+list": "raw list", "redis+stream": "raw stream", "redis+pubsub": "raw pubsub"}
#: Raw publish_many on a list as the issue words it: one LPUSH per message,
#: pipelined (``raw list`` sends one LPUSH per batch, as redis+list does).
PIPELINED_LPUSH = "raw list pipelined"
_STEP_NAMES = {
    "publish": "publish (one message per call)",
    "publish_many": "publish_many (batches)",
    "consume_ack_p1": "consume+ack, prefetch 1",
    "consume_ack_p100": "consume+ack, prefetch 100",
}
_LATENCY_NAMES = {"p50_ms": "latency p50, ms", "p99_ms": "latency p99, ms"}


@dataclass(frozen=True)
class Spread:
    """The median of some per-round figures, with their lowest and highest."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        """The spread of ``values``; ``None`` when there are none."""
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self, digits: int = 3) -> dict[str, float | int]:
        return {
            "median": round(self.median, digits),
            "min": round(self.low, digits),
            "max": round(self.high, digits),
            "rounds": self.rounds,
        }


def _figure(m: Measurement, which: str) -> float | None:
    value = m.rate if which == "rate" else getattr(m, which)
    return value if isinstance(value, float) and value > 0 else None


def figures(results: Rounds, side: str, step: str, which: str = "rate") -> Spread | None:
    """``which`` (``rate``, ``p50_ms``, ``p99_ms``) of ``side`` on ``step``, over the rounds."""
    values = [_figure(m, which) for m in results.get(side, {}).get(step, [])]
    return Spread.of([v for v in values if v is not None])


def _pairs(
    results: Rounds, side: str, other: str, step: str, which: str
) -> list[tuple[float, float]]:
    """``(side's figure, other's figure)`` per round, both measured in that round."""
    mine = results.get(side, {}).get(step, [])
    theirs = results.get(other, {}).get(step, [])
    pairs = []
    for a, b in zip(mine, theirs, strict=False):
        x, y = _figure(a, which), _figure(b, which)
        if x is not None and y is not None:
            pairs.append((x, y))
    return pairs


def paired(
    results: Rounds,
    side: str,
    other: str,
    step: str,
    which: str = "rate",
    *,
    inverted: bool = False,
) -> list[float]:
    """Per round: ``side``'s figure / ``other``'s figure measured in the same round
    (``other``'s / ``side``'s when ``inverted``)."""
    return [y / x if inverted else x / y for x, y in _pairs(results, side, other, step, which)]


def ratio(
    results: Rounds,
    side: str,
    other: str,
    step: str,
    which: str = "rate",
    *,
    inverted: bool = False,
) -> Spread | None:
    """The median (and range) over rounds of :func:`paired` ratios."""
    return Spread.of(paired(results, side, other, step, which, inverted=inverted))


def extra_us(
    results: Rounds, side: str, other: str, step: str, which: str = "rate"
) -> Spread | None:
    """The median (and range) over rounds of what ``side`` costs more than
    ``other`` in microseconds: per message for a rate (``1/rate`` apart), or the
    latency difference.

    Unlike a ratio this does not move with the machine's round-trip time: a
    step that makes one round trip per message has the ratio
    ``rtt / (rtt + extra)``, and the round trip here swings between about 30
    and 100 us for minutes at a time.
    """
    if which == "rate":
        values = [1e6 / x - 1e6 / y for x, y in _pairs(results, side, other, step, which)]
    else:
        values = [1000 * (x - y) for x, y in _pairs(results, side, other, step, which)]
    return Spread.of(values)


def round_trip_us(results: Rounds) -> Spread | None:
    """Raw redis-py's one-round-trip LPUSH, in microseconds per message: the
    machine's round-trip time during the run."""
    return Spread.of([1e6 / m.rate for m in results.get("raw list", {}).get("publish", [])])


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: the median ratio must reach ``required`` (or,
    for a latency ratio, stay under it)."""

    name: str
    measured: Spread | None
    required: float
    at_most: bool = False
    rounds_met: int = 0
    #: brokerkit's extra microseconds per message (or of latency) over a raw
    #: redis-py counterpart (``None`` against kombu).
    extra_us: Spread | None = None

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.reaches(self.measured.median)

    def reaches(self, value: float) -> bool:
        """Whether a ratio of ``value`` meets the target."""
        return value <= self.required if self.at_most else value >= self.required


def _target(
    name: str,
    results: Rounds,
    side: str,
    other: str,
    step: str,
    required: float,
    *,
    which: str = "rate",
    at_most: bool = False,
) -> Target:
    per_round = paired(results, side, other, step, which)
    target = Target(name, Spread.of(per_round), required, at_most)
    met = sum(1 for value in per_round if target.reaches(value))
    extra = None if other == "kombu" else extra_us(results, side, other, step, which)
    return Target(name, target.measured, required, at_most, met, extra)


def check_targets(results: Rounds) -> list[Target]:
    """The issue's targets, as median per-round ratios."""
    targets = [
        _target(
            "redis+list publish_many / raw pipelined LPUSH (one per message)",
            results, "redis+list", PIPELINED_LPUSH, "publish_many", 0.8,
        ),
        _target(
            "redis+list publish_many / raw LPUSH of each batch (as redis+list sends)",
            results, "redis+list", "raw list", "publish_many", 0.8,
        ),
        _target(
            "redis+stream publish_many / raw pipelined XADD",
            results, "redis+stream", "raw stream", "publish_many", 0.8,
        ),
        _target(
            "redis+stream consume+ack p100 / raw XREADGROUP COUNT 100 + XACK",
            results, "redis+stream", "raw stream", "consume_ack_p100", 0.7,
        ),
        _target(
            "redis+list consume+ack p100 / raw stream XREADGROUP COUNT 100 + XACK",
            results, "redis+list", "raw stream", "consume_ack_p100", 0.6,
        ),
    ]  # fmt: skip
    for name in RAW_OF:
        targets.append(
            _target(
                f"{name} consume+ack p100 / kombu consume+ack p100",
                results,
                name,
                "kombu",
                "consume_ack_p100",
                20.0,
            )
        )
    for (name, raw), command in zip(RAW_OF.items(), ("LPUSH", "XADD", "PUBLISH"), strict=True):
        targets.append(
            _target(
                f"{name} publish / raw one-round-trip {command}",
                results,
                name,
                raw,
                "publish",
                0.8,
            )
        )
    targets += [
        _target(
            "redis+pubsub receive rate (prefetch 100) / raw",
            results, "redis+pubsub", "raw pubsub", "consume_ack_p100", 0.8,
        ),
        _target(
            "redis+pubsub p99 latency / raw p99",
            results, "redis+pubsub", "raw pubsub", "latency", 1.5,
            which="p99_ms", at_most=True,
        ),
    ]  # fmt: skip
    return targets


def _cell(spread: Spread | None, fmt: str) -> str:
    if spread is None:
        return "-"
    return f"{spread.median:{fmt}} ({spread.low:{fmt}}..{spread.high:{fmt}})"


def _row(
    label: str,
    results: Rounds,
    name: str,
    raw: str,
    step: str,
    which: str,
    server: ServerRounds | None = None,
) -> str:
    """One table row: the three sides, the ratios, brokerkit's extra cost and the
    server time per message of each side."""
    fmt = ",.0f" if which == "rate" else ".2f"
    latency = which != "rate"
    kombu = "kombu" if raw in RAW_OF.values() else ""
    cells = [
        _cell(figures(results, name, step, which), fmt),
        _cell(figures(results, raw, step, which), fmt),
        _cell(figures(results, kombu, step, which), fmt),
        _cell(ratio(results, name, raw, step, which, inverted=latency), ".2f"),
        _cell(extra_us(results, name, raw, step, which), ",.1f"),
        _cell(ratio(results, name, kombu, step, which, inverted=latency), ".2f"),
    ]
    if server is not None:
        cells.append(server_cell(server, (name, raw, kombu), step))
        cells.append(server_ratio(server, name, raw, step))
    return f"| {label} | {' | '.join(cells)} |"


def _rows(results: Rounds, name: str, raw: str, server: ServerRounds | None) -> list[str]:
    rows = []
    for step, label in _STEP_NAMES.items():
        if name == "redis+pubsub" and step.startswith("consume"):
            label = label.replace("consume+ack", "receive (while publishing)")
        rows.append(_row(label, results, name, raw, step, "rate", server))
    if name == "redis+list":
        label = "publish_many vs raw pipelined LPUSH (one per message)"
        rows.append(_row(label, results, name, PIPELINED_LPUSH, "publish_many", "rate", server))
    for which, label in _LATENCY_NAMES.items():
        rows.append(_row(label, results, name, raw, "latency", which, server))
    return rows


def markdown(
    results: Rounds,
    meta: Mapping[str, Any],
    skipped: Mapping[str, str],
    server: ServerRounds | None = None,
) -> str:
    """The tables: per backend (msg/s and ratios, and server time per message when
    measured), memory, and the targets."""
    lines = [
        "# brokerkit benchmark",
        "",
        f"Each step: {meta['warmup']} warm-up round (discarded) and {meta['rounds']} measured "
        f"rounds per side, the sides alternating round by round; a round is {meta['count']} "
        f"messages of {meta['size']} bytes (batches of {meta['batch']}) or "
        f"{meta['latency_count']} latency ping-pongs. One process, Redis "
        f"{meta['redis_version']} on {meta['redis']}, Python {meta['python']}, {meta['date']}, "
        f"brokerkit at {meta.get('commit', 'unknown')}; "
        f"the run took {meta.get('seconds', 0):.0f} s.",
        "",
        *_server_note(server),
        "Each cell is the median over the rounds, with the lowest and highest round in "
        "brackets. Throughput in messages per second (higher is better); latency in "
        "milliseconds (lower is better). A ratio is the median of the per-round ratios "
        "brokerkit / raw redis-py or brokerkit / kombu, each taken between two figures "
        "measured back to back; for latency it is inverted (raw / brokerkit), so that "
        "above 1 is always better for brokerkit. *extra us vs raw* is the median of the "
        "per-round differences: what brokerkit costs more than raw redis-py per message "
        "(for latency: how much later a message arrives), in microseconds.",
        "",
    ]
    rtt = round_trip_us(results)
    if rtt is not None:
        lines += [
            f"Round trip during this run (raw one-round-trip LPUSH): {_cell(rtt, '.0f')} us. "
            "A step that makes one round trip per message has the ratio "
            "rtt / (rtt + extra): its ratio moves with the round trip (which swings between "
            "about 30 and 100 us on this machine for minutes at a time), its extra us do not.",
            "",
        ]
    for name, raw_name in RAW_OF.items():
        lines += [f"## {name}", ""]
        for side in (name, raw_name, "kombu"):
            if side in skipped:
                lines += [f"{side} not measured: {skipped[side]}", ""]
        if name in skipped:
            continue
        header = "| step | brokerkit | raw redis-py | kombu (Redis) | vs raw | extra us vs raw "
        header += "| vs kombu |"
        rule = "|---|---:|---:|---:|---:|---:|---:|"
        if server is not None:
            header += " server us/msg: brokerkit / raw / kombu | server vs raw |"
            rule += "---:|---:|"
        lines += [header, rule, *_rows(results, name, raw_name, server), ""]
        sides = (name, raw_name, PIPELINED_LPUSH if name == "redis+list" else "", "kombu")
        steps = (*_STEP_NAMES, "latency")
        lines += breakdown(server, [s for s in sides if s], steps, name)
    if "memory" in results:
        lines += ["## memory:// (no server)", "", "| step | brokerkit |", "|---|---:|"]
        lines += [
            f"| {_STEP_NAMES[s]} | {_cell(figures(results, 'memory', s), ',.0f')} |"
            for s in _STEP_NAMES
        ]
        lines += [
            f"| {label} | {_cell(figures(results, 'memory', 'latency', which), '.3f')} |"
            for which, label in _LATENCY_NAMES.items()
        ]
        lines.append("")
    elif "memory" in skipped:
        lines += ["## memory:// (no server)", "", f"not measured: {skipped['memory']}", ""]
    lines += [
        "## targets",
        "",
        "| target | measured (median, min..max) | required | met | rounds met | extra us vs raw |",
        "|---|---:|---:|:-:|:-:|---:|",
    ]
    for target in check_targets(results):
        sign = "≤" if target.at_most else "≥"
        met = {True: "yes", False: "**no**", None: "-"}[target.met]
        rounds = f"{target.rounds_met}/{target.measured.rounds}" if target.measured else "-"
        lines.append(
            f"| {target.name} | {_cell(target.measured, '.2f')} | {sign} {target.required:g} "
            f"| {met} | {rounds} | {_cell(target.extra_us, ',.1f')} |"
        )
    lines.append("")
    return "\n".join(lines)


def _server_note(server: ServerRounds | None) -> list[str]:
    if server is None:
        return []
    return [
        "*server us/msg* is the Redis server time per message of each side, from INFO "
        "commandstats deltas over each round (a consume round's prefill left out; the "
        "closing and purge after the clock stopped, a few commands, counted), each "
        "microsecond counted once: a script's EVALSHA counts the "
        "commands it runs, which the per-command tables list too, marked *in scripts*. "
        "*server vs raw* is the median of per-round ratios brokerkit / raw (below 1: "
        "brokerkit costs Redis less). The per-backend tables break it down by command "
        "(us and calls per message) and give the server's main-thread CPU per message "
        "(network I/O included).",
        "",
    ]


def as_json(
    results: Rounds,
    meta: Mapping[str, Any],
    skipped: Mapping[str, str],
    server: ServerRounds | None = None,
) -> dict[str, Any]:
    """Everything measured (every round), the medians and spreads, the ratios and
    the targets, as plain data."""

    def summary(side: str, step: str, rounds: Sequence[Measurement]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rounds": [
                {
                    "messages": m.messages,
                    "seconds": round(m.seconds, 6),
                    "rate": round(m.rate, 1),
                    "p50_ms": m.p50_ms,
                    "p99_ms": m.p99_ms,
                }
                for m in rounds
            ]
        }
        for which in ("rate", "p50_ms", "p99_ms") if step == "latency" else ("rate",):
            spread = figures(results, side, step, which)
            out[which] = spread.as_dict(1 if which == "rate" else 4) if spread else None
        return out

    ratios: dict[str, Any] = {}
    for name, raw in RAW_OF.items():
        per_step: dict[str, Any] = {}
        for step in _STEP_NAMES:
            per_step[step] = {
                "vs_raw": _dict(ratio(results, name, raw, step)),
                "extra_us_vs_raw": _dict(extra_us(results, name, raw, step)),
                "vs_kombu": _dict(ratio(results, name, "kombu", step)),
            }
        for which in _LATENCY_NAMES:
            per_step[f"latency_{which}"] = {
                "vs_raw": _dict(ratio(results, name, raw, "latency", which, inverted=True)),
                "extra_us_vs_raw": _dict(extra_us(results, name, raw, "latency", which)),
                "vs_kombu": _dict(ratio(results, name, "kombu", "latency", which, inverted=True)),
            }
        if name == "redis+list":
            per_step["publish_many"]["vs_raw_pipelined_lpush"] = _dict(
                ratio(results, name, PIPELINED_LPUSH, "publish_many")
            )
        ratios[name] = per_step
    rtt = round_trip_us(results)
    return {
        "meta": {**meta, "round_trip_us": _dict(rtt)},
        "skipped": dict(skipped),
        "results": {
            side: {step: summary(side, step, rounds) for step, rounds in steps.items()}
            for side, steps in results.items()
        },
        "ratios": ratios,
        "server_time": server_json(server),
        "targets": [
            {
                "target": t.name,
                "measured": _dict(t.measured),
                "required": t.required,
                "at_most": t.at_most,
                "met": t.met,
                "rounds_met": t.rounds_met,
                "extra_us_vs_raw": _dict(t.extra_us),
            }
            for t in check_targets(results)
        ],
    }


def _dict(spread: Spread | None) -> dict[str, float | int] | None:
    return None if spread is None else spread.as_dict()
