"""``brokerkit backends``, ``inspect`` and ``rescue``."""

from __future__ import annotations

import dataclasses
import json
import math
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Annotated, Any

import typer
from rich.table import Table

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._inspect import GroupInfo, TopicInfo
from brokerkit._options import MAX_SECONDS
from brokerkit._plugins import backend_for, connect, list_backends
from brokerkit.cli._data_output import print_json
from brokerkit.cli._input import text_argument
from brokerkit.cli._output import cell, err, out, writable
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import BrokerError

__all__ = [
    "RESCUE_METHODS",
    "Interrupt",
    "TopicArg",
    "UrlArg",
    "find_rescue",
    "lag_exact",
    "lag_text",
    "one_line",
    "register",
    "stop_on_interrupt",
]

#: Public methods a backend may offer to hand stuck deliveries back, in order of preference.
RESCUE_METHODS = ("rescue", "reclaim")

TopicArg = Annotated[str, typer.Argument(help="The topic.", callback=text_argument)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    app.command("backends")(backends)
    command(app, "inspect", inspect)
    command(app, "rescue", rescue)


def backends(as_json: JsonOpt = False) -> None:
    """List the installed backends: schemes, capabilities and the plugin providing each."""
    rows: list[dict[str, Any]] = []
    for info in list_backends():
        try:
            capabilities = info.capabilities
            status = "ok" if capabilities is not None else (info.install_hint or "unavailable")
            if capabilities is not None:
                info.load_async()  # what a plugin registered as aio= is checked too
        except BrokerError as exc:  # (a plugin's error: that backend alone is broken)
            capabilities, status = None, str(exc)
        target: object = info.target  # (a plugin may have registered anything)
        backend = _dotted(target) if isinstance(target, type) else str(target)
        rows.append(
            {
                "schemes": list(info.schemes),
                "capabilities": capabilities.names() if capabilities is not None else None,
                "plugin": info.plugin,
                "backend": backend,
                "status": status,
            }
        )
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="installed brokerkit backends")
    for column in ("schemes", "capabilities", "plugin", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        caps: list[str] | None = row["capabilities"]
        table.add_row(
            "\n".join(cell(scheme) for scheme in row["schemes"]),
            cell(" ".join(caps)) if caps is not None else "-",
            cell(row["plugin"]),
            "[green]ok[/]" if row["status"] == "ok" else f"[yellow]{cell(row['status'])}[/]",
        )
    out.print(table)


def inspect(url: UrlArg, topic: TopicArg, as_json: JsonOpt = False) -> None:
    """Show a topic: length, in-flight deliveries, groups, consumers, dead letters.

    A topic with nothing at all (no message, none in flight, no group, no dead
    letter) is reported as not found, with exit status 1.
    """
    with connect(url) as broker:
        info = broker.inspect(topic)
    if _is_empty(info):
        raise BrokerError(
            f"topic {topic!r} not found on {broker.url}: no message, none in flight, no group "
            "and no dead letter (it was never published to, or everything in it is settled)"
        )
    if as_json:
        print_json(out, dataclasses.asdict(info))
        return
    out.print(topic_table(info, str(broker.url)))
    if info.groups:
        out.print(groups_table(info))
    if info.details:
        details = Table(title="details", show_header=False)
        details.add_column("key", style="dim")
        details.add_column("value", overflow="fold")
        for key, value in info.details.items():
            details.add_row(cell(key), cell(_plain(value)))
        out.print(details)


def _is_empty(info: TopicInfo) -> bool:
    return not (
        info.length or info.in_flight or info.dead_lettered or info.groups or info.scheduled
    )


def topic_table(info: TopicInfo, where: str) -> Table:
    """The headline facts of ``info`` as a two-column table."""
    table = Table(title=cell(f"topic {info.topic!r} on {where}"), show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value", justify="right")
    table.add_row("length", str(info.length))
    table.add_row("in flight", str(info.in_flight))
    table.add_row("scheduled", str(info.scheduled))
    table.add_row("dead-lettered", str(info.dead_lettered))
    age = info.oldest_in_flight_age
    table.add_row("oldest in flight", "-" if age is None else f"{age:.1f} s")
    table.add_row("groups", str(len(info.groups)))
    return table


def groups_table(info: TopicInfo) -> Table:
    """One row per group, and one per consumer under it."""
    table = Table(title="groups and consumers")
    for column in ("group", "consumer", "pending", "lag", "idle"):
        table.add_column(column, justify="left" if column in ("group", "consumer") else "right")
    for group in info.groups:
        lag = "-" if group.lag is None else lag_text(group.lag, exact=lag_exact(group))
        table.add_row(cell(group.name), "", str(group.pending), lag, "")
        for consumer in group.consumers:
            idle = "-" if consumer.idle is None else f"{consumer.idle:.1f} s"
            table.add_row("", cell(consumer.name), str(consumer.pending), "", idle)
    return table


def lag_exact(group: GroupInfo) -> bool:
    """Whether ``group.lag`` is the count itself, not a lower bound: a backend's
    ``lag_exact`` False (redis+stream counts a lag Redis does not give only so far)."""
    return getattr(group, "lag_exact", True) is not False


def lag_text(lag: int, *, exact: bool = True) -> str:
    """``lag`` for a table: ``≥`` and the count for a lower bound, ``≥10000`` say
    (``>= 10000`` where stdout's encoding has no ``≥``)."""
    if exact:
        return str(lag)
    at_least = "\u2265"
    return f"{at_least}{lag}" if writable(at_least, out) == at_least else f">= {lag}"


def find_rescue(broker: Broker | type[Broker], scheme: str | None = None) -> Callable[[str], Any]:
    """The backend's public rescue method (see :data:`RESCUE_METHODS`): of ``broker``,
    or, given its class, the function (to know before connecting that it has one).

    :param scheme: the URL's scheme, to name the backend by (a class serves several).
    :raises BrokerError: the backend has none; the error says why none is needed, from
        what the backend keeps (see :func:`_no_rescue_needed`).
    """
    for name in RESCUE_METHODS:
        method = getattr(broker, name, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    backend = broker if isinstance(broker, type) else type(broker)
    raise BrokerError(
        f"{scheme or backend.describe()} has no public rescue step (a method named "
        f"{' or '.join(RESCUE_METHODS)}): {_no_rescue_needed(backend.capabilities)}"
    )


def _no_rescue_needed(capabilities: Capability) -> str:
    """Why a backend with ``capabilities`` and no rescue step needs none: with ACK a
    delivery held comes back by itself (a lease that runs out); PERSISTENT without ACK
    (kombu's virtual transports) hands a message out once, leaving its queue as it is
    fetched; with neither (pub/sub), nothing is kept at all."""
    if Capability.ACK in capabilities:
        return (
            "a delivery left unsettled, by a consumer that died too, comes back by itself "
            "once its visibility timeout runs out"
        )
    if Capability.PERSISTENT in capabilities:
        return (
            "it holds no delivery to come back: a message waits in its queue, and leaves "
            "it when a consumer fetches it (no ACK: at most once)"
        )
    return (
        "it keeps no deliveries to come back (no ACK: a message goes to whoever "
        "listens when it is published)"
    )


def rescue(
    url: UrlArg,
    topic: TopicArg,
    every: Annotated[
        float | None,
        typer.Option(
            "--every", metavar="SECONDS", help="Keep running, rescuing every SECONDS (a daemon)."
        ),
    ] = None,
) -> None:
    """Hand stuck deliveries back to the topic, once or as a daemon with --every.

    Stuck means held by a consumer that died, or past the visibility timeout. With
    --every, one line per round goes to stderr; Ctrl-C stops after the round under way
    (exit status 130), a second Ctrl-C at once. A backend without such a step (whose
    consumers take stuck deliveries back themselves, or that keeps none) is an error
    given before connecting.
    """
    if every is not None and not (math.isfinite(every) and 0 < every <= MAX_SECONDS):
        raise typer.BadParameter(
            f"must be a positive number of seconds, at most {MAX_SECONDS:.0f} (365 days), "
            f"got {every!r}",
            param_hint="--every",
        )
    parsed, info = backend_for(url)
    find_rescue(info.load(), parsed.scheme)  # no step: refused before connecting
    with connect(url) as broker:
        step = find_rescue(broker, parsed.scheme)
        if every is None:
            out.print(_count(step(topic)))
            return
        with stop_on_interrupt(twice_stops=True) as stop:
            err.print(
                cell(f"rescuing {topic!r} on {broker.url} every {every:g} s; Ctrl-C stops", err)
            )
            total = rounds = 0
            while not stop.is_set():
                count = _count(step(topic))
                total += count
                rounds += 1
                err.print(f"{time.strftime('%H:%M:%S')} round {rounds}: rescued {count}")
                stop.wait(every)
            err.print(f"stopped after {rounds} round{'s' * (rounds != 1)}; rescued {total} in all")
        stop.exit_if_interrupted()


def _count(result: Any) -> int:
    if isinstance(result, int):
        return result
    try:
        return len(result)
    except TypeError:
        return 0


class Interrupt:
    """Set by Ctrl-C (SIGINT) or SIGTERM; remembers which signal set it.

    Setting it takes no lock: a signal handler runs between two bytecodes of the main
    thread, which may be holding a lock at that moment, and a ``threading.Event`` set
    from a handler while the main thread is inside ``Event.wait`` deadlocks on the
    event's own lock. Instead a byte written to a socket pair wakes :meth:`wait`.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._flag = False
        #: Inside :meth:`raising`: a signal also raises KeyboardInterrupt.
        self._raise = False
        #: Whether a second signal raises KeyboardInterrupt (see stop_on_interrupt).
        self.twice_stops = False
        #: How deep inside :meth:`critical`, and whether a second signal came there.
        self._critical = 0
        self._forced = False
        #: The exception being handled when the first signal came (an error the
        #: command was already failing with, its cleanup under way), if any.
        self._failing: BaseException | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)

    def set(self) -> None:
        """Mark the event set and wake a :meth:`wait` under way (safe in a signal handler)."""
        self._flag = True
        with suppress(OSError):  # full (already woken) or closed: nothing to wake
            self._wake_writer.send(b"\0")

    def is_set(self) -> bool:
        """Whether a signal (or :meth:`set`) has set the event."""
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the event is set or ``timeout`` seconds pass; return whether it is set."""
        if not self._flag:
            select.select([self._wake_reader], [], [], timeout)
        return self._flag

    @contextmanager
    def raising(self) -> Iterator[None]:
        """While inside, a signal also raises :class:`KeyboardInterrupt` (after setting
        the event), to end a wait that nothing else would: a read of stdin that blocks.
        Only for a step that may be given up half done (nothing sent yet)."""
        self._raise = True
        try:
            if self._flag:
                raise KeyboardInterrupt
            yield
        finally:
            self._raise = False

    def signalled(self, signum: int) -> None:
        """What the signal handler does: set the event (the first signal's number kept),
        and raise :class:`KeyboardInterrupt` inside :meth:`raising`, or, with
        ``twice_stops``, on a second signal outside :meth:`critical` (inside, once it
        ends)."""
        again = self._flag
        if self.signum is None:
            self.signum = signum
            self._failing = sys.exc_info()[1]
        self.set()
        if self._raise:
            raise KeyboardInterrupt
        if again and self.twice_stops:
            if self._critical:
                self._forced = True
            else:
                raise KeyboardInterrupt

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A step that a second signal must not cut in two (a message printed and not
        yet acked): such a signal raises :class:`KeyboardInterrupt` once it is done."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if self._forced and not self._critical:
            raise KeyboardInterrupt

    def overrides(self, error: BaseException) -> bool:
        """Whether the interrupt, not ``error``, ends the command: a signal set the
        event before ``error`` was raised (a broker's timeout ending the wait that the
        Ctrl-C could not cut short). False for an error the command was already failing
        with when the signal came (raised from it, or during its cleanup)."""
        if self.signum is None:
            return False
        seen: set[int] = set()
        link: BaseException | None = error
        while link is not None and id(link) not in seen:
            if link is self._failing:
                return False
            seen.add(id(link))
            link = link.__cause__ or link.__context__
        return True

    def close(self) -> None:
        """Release the socket pair."""
        self._wake_reader.close()
        self._wake_writer.close()

    def exit_if_interrupted(self) -> None:
        """Exit as a shell expects of a program a signal stopped: status 128 + the
        signal's number (130 for Ctrl-C, 143 for SIGTERM).

        :raises typer.Exit: a signal set this event.
        """
        if self.signum is not None:
            raise typer.Exit(128 + self.signum)


@contextmanager
def stop_on_interrupt(*, twice_stops: bool = False) -> Iterator[Interrupt]:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets, instead of raising in the middle
    of whatever is running; the caller checks it at a safe point, and calls
    :meth:`Interrupt.exit_if_interrupted` once it has cleaned up.

    :param twice_stops: a second signal raises :class:`KeyboardInterrupt` (exit status
        130) outside the steps marked :meth:`Interrupt.critical`: a command waiting on a
        broker that does not answer (a connection being made, a fetch) stops at once
        instead of at the driver's timeout.

    A broker's error (:class:`~brokerkit.exceptions.BrokerError` or ``OSError``) raised
    out of the block after a signal (see :meth:`Interrupt.overrides`) ends the command
    as the signal does: one line on stderr, ``interrupted; what was under way then
    failed: ...``, and :class:`typer.Exit` with status 128 + the signal's number.

    :raises typer.Exit: such an error.
    """
    stop = Interrupt()
    stop.twice_stops = twice_stops
    try:
        if threading.current_thread() is not threading.main_thread():
            yield stop
            return

        def handler(signum: int, frame: Any) -> None:
            stop.signalled(signum)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield stop
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
    except (BrokerError, OSError) as exc:
        if not stop.overrides(exc):
            raise
        err.print(cell(f"interrupted; what was under way then failed: {one_line(exc)}", err))
        raise typer.Exit(128 + (stop.signum or signal.SIGINT)) from None
    finally:
        stop.close()


def one_line(error: BaseException) -> str:
    """``error``'s text on one line, as ``brokerkit: error:`` shows it."""
    return " ".join((str(error) or type(error).__name__).split())


def _dotted(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)
