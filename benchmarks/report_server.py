"""The server-time columns and tables of the results (see :mod:`benchmarks.servertime`)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.servertime import ServerTime, summarise

__all__ = [
    "ServerRounds",
    "breakdown",
    "cpu_cells",
    "server_cell",
    "server_json",
    "server_ratio",
]

#: side -> step -> one server time per measured round.
ServerRounds = Mapping[str, Mapping[str, Sequence[ServerTime]]]


def _times(server: ServerRounds | None, side: str, step: str) -> Sequence[ServerTime]:
    if server is None:
        return ()
    return server.get(side, {}).get(step, ())


def total(server: ServerRounds | None, side: str, step: str) -> float | None:
    """The median over rounds of ``side``'s server time per message on ``step``."""
    times = _times(server, side, step)
    return statistics.median(t.total_us for t in times) if times else None


def cpu_cells(server: ServerRounds | None, side: str, step: str) -> tuple[str, str]:
    """``side``'s median CPU us per message on ``step``: the server's main thread and
    the benchmark process's ("-" if not measured)."""
    times = _times(server, side, step)
    if not times:
        return "-", "-"
    server_cpu = statistics.median(t.cpu_us_per_message for t in times)
    client_cpu = statistics.median(t.client_cpu_us_per_message for t in times)
    return f"{server_cpu:.2f}", f"{client_cpu:.2f}"


def server_cell(server: ServerRounds | None, sides: Sequence[str], step: str) -> str:
    """``bk / raw / kombu``: each side's median server us per message ("-" if none)."""
    cells = []
    for side in sides:
        value = total(server, side, step) if side else None
        cells.append("-" if value is None else f"{value:.2f}")
    return " / ".join(cells)


def server_ratio(server: ServerRounds | None, side: str, other: str, step: str) -> str:
    """The median of per-round ratios of server time per message, ``side`` / ``other``
    (below 1: ``side`` costs Redis less)."""
    mine, theirs = _times(server, side, step), _times(server, other, step)
    ratios = [a.total_us / b.total_us for a, b in zip(mine, theirs, strict=False) if b.total_us]
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}"


def _commands(summary: Mapping[str, Any], limit: int = 6) -> str:
    ranked = sorted(summary["commands"].items(), key=lambda item: -item[1]["us"])
    parts = []
    for command, figures in ranked[:limit]:
        if figures["us"] < 0.005 and figures["calls"] < 0.005:
            continue
        nested = ""
        if command == "exec":
            nested = " (its commands counted on their own)"
        elif figures["nested"] >= 0.99:
            nested = " in scripts"
        elif figures["nested"] > 0.01:
            nested = f" ({figures['nested']:.0%} in scripts)"
        parts.append(f"{command.upper()} {figures['us']:.2f} ({figures['calls']:.2f}x){nested}")
    left = len(ranked) - limit
    if left > 0:
        parts.append(f"+{left} more")
    return ", ".join(parts) or "-"


def breakdown(
    server: ServerRounds | None, sides: Sequence[str], steps: Sequence[str], title: str
) -> list[str]:
    """A markdown table: per step and side, the server time per message (median,
    min..max), the main thread's CPU per message, and the costliest commands."""
    rows = []
    for step in steps:
        for side in sides:
            summary = summarise(_times(server, side, step))
            if summary is None:
                continue
            scripts = ", ".join(f"{name} {us:.0f} us" for name, us in summary["scripts"].items())
            rows.append(
                f"| {step} | {side} | {summary['total_us']:.2f} "
                f"({summary['total_min']:.2f}..{summary['total_max']:.2f}) "
                f"| {summary['cpu_us']:.1f} | {_commands(summary)} | {scripts or '-'} |"
            )
    if not rows:
        return []
    return [
        f"### {title}: Redis server time per message",
        "",
        "| step | side | server us/msg (min..max) | main thread CPU us/msg | per command: us/msg "
        "(calls/msg) | scripts run (us per call, attribution round) |",
        "|---|---|---:|---:|---|---|",
        *rows,
        "",
    ]


def server_json(server: ServerRounds | None) -> dict[str, Any]:
    """Per side and step: the medians (:func:`summarise`) and every round."""
    if server is None:
        return {}
    return {
        side: {
            step: {"summary": summarise(times), "rounds": [t.as_dict() for t in times]}
            for step, times in steps.items()
        }
        for side, steps in server.items()
    }
