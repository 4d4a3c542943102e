"""The benchmark results as JSON and as markdown tables with ratios and targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from brokerkit.cli._bench import Measurement

__all__ = ["Target", "as_json", "check_targets", "markdown"]

Results = Mapping[str, list[Measurement]]

#: Which raw redis-py run each brokerkit backend is measured against.
RAW_OF = {"redis+list": "raw list", "redis+stream": "raw stream", "redis+pubsub": "raw pubsub"}
_STEP_NAMES = {
    "publish": "publish (one message per call)",
    "publish_many": "publish_many (batches)",
    "consume_ack_p1": "consume+ack, prefetch 1",
    "consume_ack_p100": "consume+ack, prefetch 100",
    "latency": "publish-to-receive latency",
}


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: ``measured`` must reach ``required`` (or, for a
    latency ratio, stay under it)."""

    name: str
    measured: float | None
    required: float
    at_most: bool = False

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.required if self.at_most else self.measured >= self.required


def _by_step(results: Results, name: str) -> dict[str, Measurement]:
    return {m.step: m for m in results.get(name, [])}


def _ratio(a: Measurement | None, b: Measurement | None) -> float | None:
    if a is None or b is None or b.rate == 0:
        return None
    return a.rate / b.rate


def check_targets(results: Results) -> list[Target]:
    """The issue's targets, as ratios measured in this run."""
    lst, stream, pubsub = (_by_step(results, n) for n in RAW_OF)
    raw_list, raw_stream, raw_pubsub = (_by_step(results, n) for n in RAW_OF.values())
    kombu = _by_step(results, "kombu")
    targets = [
        Target(
            "redis+list publish_many / raw pipelined LPUSH",
            _ratio(lst.get("publish_many"), raw_list.get("publish_many")),
            0.8,
        ),
        Target(
            "redis+stream publish_many / raw pipelined XADD",
            _ratio(stream.get("publish_many"), raw_stream.get("publish_many")),
            0.8,
        ),
        Target(
            "redis+stream consume+ack p100 / raw XREADGROUP COUNT 100 + XACK",
            _ratio(stream.get("consume_ack_p100"), raw_stream.get("consume_ack_p100")),
            0.7,
        ),
        Target(
            "redis+list consume+ack p100 / raw stream XREADGROUP COUNT 100 + XACK",
            _ratio(lst.get("consume_ack_p100"), raw_stream.get("consume_ack_p100")),
            0.5,
        ),
    ]
    for name in RAW_OF:
        mine = _by_step(results, name)
        targets.append(
            Target(
                f"{name} consume+ack p100 / kombu consume+ack p100",
                _ratio(mine.get("consume_ack_p100"), kombu.get("consume_ack_p100")),
                20.0,
            )
        )
    commands = ("LPUSH", "XADD", "PUBLISH")
    for name, raw, command in zip(
        RAW_OF, (raw_list, raw_stream, raw_pubsub), commands, strict=True
    ):
        targets.append(
            Target(
                f"{name} publish / raw one-round-trip {command}",
                _ratio(_by_step(results, name).get("publish"), raw.get("publish")),
                0.8,
            )
        )
    targets.append(
        Target(
            "redis+pubsub receive rate / raw",
            _ratio(pubsub.get("consume_ack_p100"), raw_pubsub.get("consume_ack_p100")),
            0.8,
        )
    )
    mine_lat, raw_lat = pubsub.get("latency"), raw_pubsub.get("latency")
    targets.append(
        Target(
            "redis+pubsub p99 latency / raw p99",
            (mine_lat.p99_ms / raw_lat.p99_ms)
            if mine_lat and raw_lat and mine_lat.p99_ms and raw_lat.p99_ms
            else None,
            1.5,
            at_most=True,
        )
    )
    return targets


def _rate(m: Measurement | None) -> str:
    if m is None:
        return "-"
    if m.step == "latency":
        return f"{m.p50_ms:.2f} / {m.p99_ms:.2f} ms"
    return f"{m.rate:,.0f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _latency_ratio(a: Measurement | None, b: Measurement | None) -> float | None:
    # For latency a lower figure is better: report p50 as raw/brokerkit so that > 1 is faster.
    if a is None or b is None or not a.p50_ms or not b.p50_ms:
        return None
    return b.p50_ms / a.p50_ms


def markdown(results: Results, meta: Mapping[str, Any], skipped: Mapping[str, str]) -> str:
    """The tables: per backend (msg/s and ratios), memory, and the targets."""
    lines = [
        "# brokerkit benchmark",
        "",
        f"{meta['count']} messages of {meta['size']} bytes per step (batches of "
        f"{meta['batch']}; latency: {meta['latency_count']} ping-pongs), one process, "
        f"Redis {meta['redis_version']} on {meta['redis']}, Python {meta['python']}, "
        f"{meta['date']}.",
        "",
        "Throughput in messages per second (higher is better); latency as p50 / p99. "
        "Ratios are brokerkit / raw redis-py and brokerkit / kombu (for latency, "
        "the p50 ratio is inverted so that above 1 is always better for brokerkit).",
        "",
    ]
    kombu = _by_step(results, "kombu")
    for name, raw_name in RAW_OF.items():
        lines.append(f"## {name}")
        lines.append("")
        if name in skipped:
            lines += [f"not measured: {skipped[name]}", ""]
            continue
        mine, raw = _by_step(results, name), _by_step(results, raw_name)
        lines += [
            "| step | brokerkit | raw redis-py | kombu (Redis) | vs raw | vs kombu |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for step, label in _STEP_NAMES.items():
            a, b, k = mine.get(step), raw.get(step), kombu.get(step)
            if step == "latency":
                vs_raw, vs_kombu = _latency_ratio(a, b), _latency_ratio(a, k)
            else:
                vs_raw, vs_kombu = _ratio(a, b), _ratio(a, k)
            if name == "redis+pubsub" and step.startswith("consume"):
                label = label.replace("consume+ack", "receive (while publishing)")
            lines.append(
                f"| {label} | {_rate(a)} | {_rate(b)} | {_rate(k)} | "
                f"{_fmt_ratio(vs_raw)} | {_fmt_ratio(vs_kombu)} |"
            )
        lines.append("")
    memory = _by_step(results, "memory")
    if memory:
        lines += ["## memory:// (no server)", "", "| step | brokerkit |", "|---|---:|"]
        lines += [f"| {_STEP_NAMES[s]} | {_rate(memory.get(s))} |" for s in _STEP_NAMES]
        lines.append("")
    lines += ["## targets", "", "| target | measured | required | met |", "|---|---:|---:|:-:|"]
    for target in check_targets(results):
        sign = "≤" if target.at_most else "≥"
        met = {True: "yes", False: "**no**", None: "-"}[target.met]
        lines.append(
            f"| {target.name} | {_fmt_ratio(target.measured)} | {sign} {target.required:g} "
            f"| {met} |"
        )
    lines.append("")
    return "\n".join(lines)


def as_json(
    results: Results, meta: Mapping[str, Any], skipped: Mapping[str, str]
) -> dict[str, Any]:
    """Everything measured, with the targets, as plain data."""
    return {
        "meta": dict(meta),
        "skipped": dict(skipped),
        "results": {
            name: [
                {
                    "step": m.step,
                    "messages": m.messages,
                    "seconds": round(m.seconds, 6),
                    "rate": round(m.rate, 1),
                    "p50_ms": m.p50_ms,
                    "p99_ms": m.p99_ms,
                }
                for m in measurements
            ]
            for name, measurements in results.items()
        },
        "targets": [
            {
                "target": t.name,
                "measured": t.measured,
                "required": t.required,
                "at_most": t.at_most,
                "met": t.met,
            }
            for t in check_targets(results)
        ],
    }
