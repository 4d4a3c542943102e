"""``brokerkit topics`` (every topic at a glance) and ``brokerkit top`` (a live view)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._inspect import TopicInfo
from brokerkit._options import MAX_SECONDS
from brokerkit._plugins import connect
from brokerkit._topics import check_topic, is_topic
from brokerkit.cli._admin import lag_exact, lag_text, stop_on_interrupt
from brokerkit.cli._data_output import print_json
from brokerkit.cli._input import check_text
from brokerkit.cli._output import cell, err, out
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import InvalidTopic, Unsupported

__all__ = ["Snapshot", "register", "snapshot", "topic_names"]

DLQ = ".dlq"


def register(app: typer.Typer) -> None:
    command(app, "topics", topics)
    command(app, "top", top)


def topic_names(broker: Broker) -> list[str]:
    """The broker's topics, a dead-letter topic standing for its topic (whose dead
    letters ``inspect`` counts), so that each appears once.

    :raises Unsupported: the backend cannot list its topics (the message says to
        name them with --topic).
    """
    try:
        listed = broker.topics()
    except Unsupported as exc:
        raise Unsupported(
            broker.describe(), Capability.NONE, "list its topics: name them with --topic"
        ) from exc
    names = set()
    for name in listed:
        if not is_topic(name):  # a plugin that lists what it cannot inspect
            continue
        names.add(name[: -len(DLQ)] if name.endswith(DLQ) and len(name) > len(DLQ) else name)
    return sorted(names)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Every topic's :class:`TopicInfo` at one moment (monotonic seconds)."""

    at: float
    infos: tuple[TopicInfo, ...]


def snapshot(broker: Broker, only: Sequence[str] = ()) -> Snapshot:
    """Inspect ``only`` these topics, or every topic the broker lists."""
    names = list(only) or topic_names(broker)
    return Snapshot(time.monotonic(), tuple(broker.inspect(name) for name in names))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 100:
        return f"{seconds:.1f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _lag(info: TopicInfo) -> str:
    """The largest lag; a lower bound (``≥``) when a group's lag is one."""
    known = [g for g in info.groups if g.lag is not None]
    if not known:
        return "-"
    most = max(g.lag or 0 for g in known)
    return lag_text(most, exact=all(lag_exact(g) for g in known))


def _rate(now: int, before: int | None, seconds: float) -> str:
    if before is None or seconds <= 0:
        return ""
    change = (now - before) / seconds
    return "0/s" if change == 0 else f"{change:+.1f}/s"


def topics_table(current: Snapshot, where: str, previous: Snapshot | None = None) -> Table:
    """One row per topic; with ``previous``, the length's and dead letters' change per
    second since then."""
    rates = previous is not None
    table = Table(title=cell(f"topics on {where}"))
    columns = ["topic", "length", *(["length/s"] * rates), "held", "in flight", "groups"]
    columns += ["max lag"]
    columns += ["dead letters", *(["dead/s"] * rates), "oldest waiting"]
    for column in columns:
        table.add_column(column, justify="left" if column == "topic" else "right")
    before = {info.topic: info for info in previous.infos} if previous else {}
    seconds = current.at - previous.at if previous else 0.0
    for info in current.infos:
        old = before.get(info.topic)
        cells = {
            "topic": cell(info.topic),
            "length": str(info.length),
            "length/s": _rate(info.length, old.length if old else None, seconds),
            "held": str(info.scheduled),
            "in flight": str(info.in_flight),
            "groups": str(len(info.groups)),
            "max lag": _lag(info),
            "dead letters": str(info.dead_lettered),
            "dead/s": _rate(info.dead_lettered, old.dead_lettered if old else None, seconds),
            "oldest waiting": _age(info.oldest_waiting_age),
        }
        table.add_row(*(cells[c] for c in columns), style="yellow" if info.dead_lettered else None)
    if not current.infos:
        table.caption = "no topics"
    return table


def _topics_given(names: list[str] | None) -> list[str] | None:
    """Each --topic checked before anything connects (a usage error names it); a topic
    given twice is kept once, where it was first given (else a report would show it,
    and an exporter serve its series, twice)."""
    for name in names or ():
        check_text(name, "--topic")
        try:
            check_topic(name)
        except InvalidTopic as exc:
            raise typer.BadParameter(str(exc), param_hint="--topic") from None
    return list(dict.fromkeys(names)) if names else names


OnlyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--topic",
        "-t",
        help="Only this topic (repeat for more); default: every one.",
        callback=_topics_given,
    ),
]


def topics(
    url: UrlArg,
    only: OnlyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every topic: length, held (delayed), in flight, groups, lag, dead letters,
    oldest waiting.

    Dead-letter topics are counted under their topic. A backend that cannot list its
    topics (kombu+amqp) says so: name them with --topic.
    """
    with connect(url) as broker:
        current = snapshot(broker, only or ())
    if as_json:
        print_json(out, [dataclasses.asdict(i) for i in current.infos])
        return
    out.print(topics_table(current, str(broker.url)))


def top(
    url: UrlArg,
    only: OnlyOpt = None,
    interval: Annotated[
        float,
        typer.Option("--interval", "-n", metavar="SECONDS", help="Seconds between refreshes."),
    ] = 2.0,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", metavar="N", help="Stop after N refreshes (default: Ctrl-C)."),
    ] = None,
) -> None:
    """A live view of every topic, refreshed every --interval seconds, with rates.

    The rates are each count's change per second between two refreshes. Ctrl-C stops.
    Without a terminal (a pipe), each refresh is printed one after the other.
    """
    if not (math.isfinite(interval) and 0 < interval <= MAX_SECONDS):
        raise typer.BadParameter(
            f"must be a positive number of seconds, at most {MAX_SECONDS:.0f} (365 days), "
            f"got {interval!r}",
            param_hint="--interval",
        )
    if iterations is not None and iterations < 1:
        raise typer.BadParameter("must be 1 or more", param_hint="--iterations")
    with connect(url) as broker, stop_on_interrupt() as stop:
        where = str(broker.url)
        previous: Snapshot | None = None
        done = 0

        def frame() -> Group:
            nonlocal previous
            current = snapshot(broker, only or ())
            view = Group(
                topics_table(current, where, previous),
                Text(f"{time.strftime('%H:%M:%S')}  every {interval:g} s  Ctrl-C stops", "dim"),
            )
            previous = current
            return view

        def more() -> bool:
            if iterations is not None and done >= iterations:
                return False
            return not stop.wait(interval)

        if not out.is_terminal:  # a pipe or a file: one refresh after the other
            while True:
                out.print(frame())
                done += 1
                if not more():
                    break
        else:
            with Live(frame(), console=out, auto_refresh=False) as live:
                done = 1
                while more():
                    live.update(frame(), refresh=True)
                    done += 1
    if stop.signum is not None:
        err.print("stopped")
    stop.exit_if_interrupted()
