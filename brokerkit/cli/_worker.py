"""``brokerkit worker module:worker [URL]``: run a program's handlers from the shell.

Exit status: 0 after a stop from the program's code and a clean drain; 128 + the
signal after SIGINT (130) or SIGTERM (143), whether or not the drain finished in time;
1 when handlers were still running at the end of the grace period of a stop that no
signal started, or on an error from the broker (one that could not be reached, or
that refused a handler, as the worker started: then the error is printed, with no
final status of a run that never happened, unless handlers had subscribed before the
error: their status lines are printed above it, under a line saying how many of the
worker's handlers had) or when the worker has no handlers; and 2
when the worker cannot be imported or found, has no broker and none is given, or an
option is out of range.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
from contextlib import suppress
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from brokerkit._options import MAX_SECONDS
from brokerkit._plugins import connect
from brokerkit.aio._connect import connect as aconnect
from brokerkit.cli._output import cell, err, hide_secrets_of, visible
from brokerkit.cli._url import URL_ENV
from brokerkit.exceptions import InvalidOption
from brokerkit.worker import StatsSnapshot, Worker
from brokerkit.worker._worker_async import AsyncWorker

__all__ = ["MIN_INTERVAL", "register"]

#: The shortest ``--interval`` between status updates, in seconds.
MIN_INTERVAL = 0.1


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:WORKER",
            help="Where the worker is: a module (importable from here) and the name of "
            "its brokerkit.Worker or brokerkit.aio.Worker, such as 'orders.app:worker'.",
            show_default=False,
        ),
    ],
    url: Annotated[
        str | None,
        typer.Argument(
            metavar="URL",
            help=f"The broker URL to run on; default: ${URL_ENV}, else the worker's own broker.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Slots for every handler (overrides)."),
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds handlers get to finish after a stop (0 or more; inf: no limit)."
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            help=f"Seconds between status updates, {MIN_INTERVAL} to {MAX_SECONDS:.0f} "
            "(default: 0.5 on a terminal, else 10)."
        ),
    ] = None,
) -> int:
    """Run the handlers of a worker until SIGTERM or Ctrl-C, then drain and exit.

    Prints a live line per handler (processed, failed, retried, dead-lettered, in
    flight, rate) on stderr: a table on a terminal, log lines otherwise; a worker that
    could not start prints its error, above it the status lines of the handlers that
    had subscribed before it, if any. Exit status: 0 after a clean drain, 130
    after SIGINT and 143 after SIGTERM (drained or not), 1 when handlers were cut short
    with no signal to report, on an error from the broker (one not reached, or
    refusing a handler) or with no handlers, 2 when the worker cannot be imported, has
    no broker and none is given, or an option is out of range.
    """
    _check_seconds(grace, interval)
    found = load_worker(target)
    if found.broker is not None:
        # The URL the command was given is masked for every command (see MaskingGroup);
        # that of the broker the worker's module made is masked too, for the worker's life.
        own = found.broker.url.render(hide_password=False)
        forget = hide_secrets_of([own])
        try:
            return _run_worker(found, target, url, concurrency, grace, interval)
        finally:
            forget()
    return _run_worker(found, target, url, concurrency, grace, interval)


def _check_seconds(grace: float | None, interval: float | None) -> None:
    """Refuse a ``--grace`` that is no number of seconds (NaN, negative) and an
    ``--interval`` out of range (its status thread's wait overflowed past a year).

    :raises typer.BadParameter: naming the option and what is valid.
    """
    if grace is not None and not grace >= 0:
        raise typer.BadParameter(
            f"must be a number of seconds, 0 or more (inf: no limit), got {grace!r}",
            param_hint="--grace",
        )
    if interval is not None and not MIN_INTERVAL <= interval <= MAX_SECONDS:
        raise typer.BadParameter(
            f"must be a number of seconds from {MIN_INTERVAL} to {MAX_SECONDS:.0f} "
            f"(365 days), got {interval!r}",
            param_hint="--interval",
        )


def _run_worker(
    found: Worker | AsyncWorker,
    target: str,
    url: str | None,
    concurrency: int | None,
    grace: float | None,
    interval: float | None,
) -> int:
    if not url and URL_ENV in os.environ and not os.environ[URL_ENV].strip():
        # refused as connect() refuses it: a blank variable is no choice of a broker
        example = "redis+stream://localhost:6379/0"
        if found.broker is not None:
            what = (
                f"set it to a broker URL (such as {example}), or unset it to run "
                f"{target} on its worker's own broker"
            )
        else:  # unset, it would leave the worker with no broker at all
            what = (
                f"{target} has no broker of its own: set it to a broker URL (such as "
                f"{example}), or give one after {target} (brokerkit worker {target} {example})"
            )
        raise typer.BadParameter(
            f"${URL_ENV} is set but empty, and no URL was given: {what}",
            param_hint="URL",
        )
    url = url or os.environ.get(URL_ENV) or None
    if url is None and found.broker is None:
        raise typer.BadParameter(
            f"{target} has no broker of its own: give the broker URL (such as "
            f"redis+stream://localhost:6379/0) or set ${URL_ENV}",
            param_hint="URL",
        )
    if grace is not None:
        found.grace = grace
    if concurrency is not None:
        try:
            found.set_concurrency(concurrency)
        except InvalidOption as exc:  # past the most slots its handlers may have
            raise typer.BadParameter(
                str(exc).removeprefix("concurrency "), param_hint="--concurrency"
            ) from None
    live = err.is_terminal
    display = _Display(found, live, interval or (0.5 if live else 10.0))
    if isinstance(found, AsyncWorker):
        asyncio.run(_run_async(found, url, display))
    else:
        _run_sync(found, url, display)
    status = 128 + found.stopped_by if found.stopped_by is not None else 0
    if not found.drained:
        status = status or 1
        # Handler threads that did not end would keep the process alive: leave now.
        for stream in (sys.stdout, sys.stderr):
            with suppress(AttributeError, OSError, ValueError):  # closed: nothing to flush
                stream.flush()
        os._exit(status)
    return status


def load_worker(target: str) -> Worker | AsyncWorker:
    """The worker named by ``module:attribute`` (the current directory is importable).

    :raises typer.BadParameter: the module does not import, or has no such worker.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise typer.BadParameter(
            f"expected MODULE:WORKER such as 'orders.app:worker', got {target!r}",
            param_hint="MODULE:WORKER",
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise typer.BadParameter(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}",
            param_hint="MODULE:WORKER",
        ) from exc
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise typer.BadParameter(
                f"module {module_name!r} has no {attribute!r}", param_hint="MODULE:WORKER"
            ) from None
    if not isinstance(found, (Worker, AsyncWorker)):
        raise typer.BadParameter(
            f"{target} is a {type(found).__name__}, not a brokerkit.Worker or brokerkit.aio.Worker",
            param_hint="MODULE:WORKER",
        )
    return found


def _run_sync(found: Worker, url: str | None, display: _Display) -> None:
    broker = connect(url) if url else None
    if broker is not None:
        found.broker = broker
    try:
        with display:
            found.run()
    finally:
        if broker is not None:
            broker.close()


async def _run_async(found: AsyncWorker, url: str | None, display: _Display) -> None:
    broker = await aconnect(url) if url else None
    if broker is not None:
        found.broker = broker
    try:
        with display:
            await found.run()
    finally:
        if broker is not None:
            await broker.close()


class _Display:
    """The status of every handler on stderr, every ``interval`` seconds, from a
    thread of its own: a live table on a terminal, plain lines otherwise."""

    def __init__(self, found: Worker | AsyncWorker, live: bool, interval: float) -> None:
        self._worker = found
        self._live = live
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="brokerkit-status", daemon=True)
        self._last: dict[str, StatsSnapshot] = {}

    def __enter__(self) -> _Display:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the updates and print the final status, of a run that started. A start
        that failed before any handler subscribed (a broker not reached, the first
        handler refused) prints no final status, only its error (off a terminal, the
        periodic lines of a start longer than ``--interval`` may come before it); one
        that failed after some had (a later
        handler refused) prints, above its error, how many had and their status lines:
        they may have processed messages meanwhile."""
        self._stop.set()
        self._thread.join(5.0)
        if self._worker._started:
            lines = self._lines()
        elif subscribed := self._worker._subscribed:
            lines = [
                f"worker did not start: {subscribed} of {len(self._worker.handlers)} "
                "handler(s) had subscribed when the error below stopped it; what they did:",
                *self._lines()[:subscribed],
            ]
        else:
            return
        for line in lines:
            err.print(line, markup=False, highlight=False)

    def _loop(self) -> None:
        if not self._live:
            while not self._stop.wait(self._interval):
                for line in self._lines():
                    err.print(line, markup=False, highlight=False)
            return
        with Live(self._table(), console=err, transient=True, auto_refresh=False) as live:
            while not self._stop.wait(self._interval):
                live.update(self._table(), refresh=True)

    def _rows(self) -> list[tuple[StatsSnapshot, float]]:
        rows = []
        for snap in self._worker.stats():
            rows.append((snap, snap.rate(self._last.get(snap.name))))
            self._last[snap.name] = snap
        return rows

    def _lines(self) -> list[str]:
        return [
            f"handler={visible(s.name)} topic={visible(s.topic)} processed={s.processed} "
            f"failed={s.failed} retried={s.retried} dead_lettered={s.dead_lettered} "
            f"in_flight={s.in_flight} rate={rate:.1f}/s"
            for s, rate in self._rows()
        ]

    def _table(self) -> Table:
        table = Table(title="brokerkit worker (Ctrl-C drains, twice stops)")
        for column in (
            "handler",
            "topic",
            "processed",
            "failed",
            "retried",
            "dead",
            "in flight",
            "rate/s",
        ):
            table.add_column(column, justify="left" if column in ("handler", "topic") else "right")
        for s, rate in self._rows():
            table.add_row(
                cell(s.name, err),
                cell(s.topic, err),
                str(s.processed),
                str(s.failed),
                str(s.retried),
                str(s.dead_lettered),
                str(s.in_flight),
                f"{rate:.1f}",
            )
        return table
