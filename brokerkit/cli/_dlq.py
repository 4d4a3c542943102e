"""``brokerkit dlq``: list a topic's dead letters, and move some or all of them back."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._inspect import DLQ_GROUP
from brokerkit._plugins import connect
from brokerkit._subscription import Subscription
from brokerkit._topics import RESERVED_HEADER_PREFIX
from brokerkit.cli._admin import Interrupt, TopicArg, stop_on_interrupt
from brokerkit.cli._data_output import print_json, text_of
from brokerkit.cli._output import cell, err, out
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import BrokerError, SerializationError, Unsupported

__all__ = ["MOVES_HEADER", "DeadLetter", "move_dead_letters", "register"]

#: Counts how many times a message was moved back from a dead-letter topic.
MOVES_HEADER = "x-dlq-moves"
REASON_HEADERS = ("x-dead-letter-reason", "x-death-reason")
ORIGIN_HEADER = "x-original-topic"
_ALREADY_THERE = (
    "not moved: it is on its original topic already (a topic of the last dead-letter "
    "level is its own dead-letter topic)"
)
#: How long to wait for the dead-letter topic's next message before taking it as read.
READ_WAIT = 1.0
#: How often a wait for the next dead letter looks at Ctrl-C.
_POLL = 0.25


def register(app: typer.Typer) -> None:
    command(app, "dlq", dlq)


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as listed, and what became of it."""

    id: str
    reason: str
    original_topic: str
    deliveries: str
    age: float | None
    body: str
    moved_to: str | None = None
    #: Why it could not be moved back (it stays a dead letter); None otherwise.
    error: str | None = None


def _describe(
    delivery: Delivery, topic: str, moved_to: str | None, error: str | None = None
) -> DeadLetter:
    headers = delivery.headers
    reason = next((headers[h] for h in REASON_HEADERS if h in headers), "-")
    published = delivery.message.published_at
    try:
        body = text_of(delivery.body)
    except SerializationError:
        body = repr(delivery.payload[:60])
    return DeadLetter(
        id=delivery.id,
        reason=reason,
        original_topic=headers.get(ORIGIN_HEADER, topic),
        deliveries=headers.get("x-deliveries", "-"),
        age=max(time.time() - published, 0.0) if published > 0 else None,
        body=body if len(body) <= 60 else body[:57] + "...",
        moved_to=moved_to,
        error=error,
    )


def move_dead_letters(
    broker: Broker,
    topic: str,
    *,
    ids: Sequence[str] = (),
    every: bool = False,
    dry_run: bool = False,
    wait: float = READ_WAIT,
    stop: Interrupt | None = None,
) -> list[DeadLetter]:
    """Read every dead letter of ``topic``; republish to its original topic those
    whose id is in ``ids`` (or all, with ``every``), and ack them in the dead-letter
    topic; hand the others back. With ``dry_run`` nothing is published and every one
    is handed back. A moved message keeps its headers but the ``x-dead-letter-*``
    ones (which only the broker may write; the next dead-lettering writes them
    afresh), and ``x-dlq-moves`` counts the moves. A message is republished as the
    bytes it was stored as, with its content type, so a payload that does not decode
    (a worker's "invalid body" dead letter) moves as well as any other. A message
    that cannot be republished is handed back, listed with its ``error``, and the
    others are still moved.

    The dead letters are read through the group ``brokerkit-dlq`` where a new group
    reads a topic from its start (REPLAY), else through the dead-letter topic's
    default group, the one they land in. Only once :meth:`~brokerkit.Broker.inspect`
    counts one waiting (``dead_lettered``): with none, nothing is read, and reading
    creates nothing (a mistyped topic's dead-letter queue, stream or group).

    :param wait: how long to wait for the next dead letter before taking all as read.
    :param stop: once set (by Ctrl-C, say), reading ends after the dead letter in hand
        is moved (republished *and* acked) or listed; the rest are left where they are.
        A second signal that raises (``twice_stops``) waits for that move to be done.
    :returns: every dead letter read, with ``moved_to`` set for those moved (or, in a
        dry run, those that would be), ``error`` for those that could not be.
    """
    wanted = set(ids)
    listed: list[DeadLetter] = []
    keep: list[Delivery] = []
    source = broker.dead_letter_topic(topic)
    if not _any_waiting(broker, topic):
        return listed
    group = _group(broker)
    start = "earliest" if group is not None else None
    subscription = broker.subscribe(source, group=group, prefetch=100, start=start)
    with subscription:
        try:
            while True:
                delivery = _next(subscription, wait, stop)
                if delivery is None:
                    break
                if stop is not None and stop.is_set():
                    keep.append(delivery)  # came in after the stop: handed back untouched
                    break
                if not (every or delivery.id in wanted):
                    keep.append(delivery)
                    listed.append(_describe(delivery, topic, None))
                    continue
                target = delivery.headers.get(ORIGIN_HEADER, topic)
                if (
                    target == source
                ):  # the last dead-letter level is its own: moved, it would come back
                    keep.append(delivery)
                    listed.append(_describe(delivery, topic, None, _ALREADY_THERE))
                    continue
                if dry_run:
                    keep.append(delivery)
                    listed.append(_describe(delivery, topic, target))
                    continue
                # never cut between its republish and its ack (a second Ctrl-C waits)
                with nullcontext() if stop is None else stop.critical():
                    try:
                        _republish(broker, delivery, target)
                    except BrokerError as exc:
                        keep.append(delivery)  # handed back below, moved nowhere
                        listed.append(_describe(delivery, topic, None, f"{exc}"))
                        continue
                    except BaseException:
                        keep.append(delivery)
                        raise
                    delivery.ack()
                    listed.append(_describe(delivery, topic, target))
        finally:
            if keep:
                broker.nack(*keep, requeue=True)
    return listed


def _any_waiting(broker: Broker, topic: str) -> bool:
    """Whether ``topic`` may have a dead letter to read: inspect counts one waiting,
    or the backend cannot inspect. Inspecting declares nothing where subscribing
    would (kombu's dead-letter queue and exchanges, a Redis stream's group)."""
    try:
        return broker.inspect(topic).dead_lettered > 0
    except Unsupported:
        return True


def _next(subscription: Subscription, wait: float, stop: Interrupt | None) -> Delivery | None:
    """The next dead letter, waiting at most ``wait`` seconds (``None`` once ``stop``
    is set)."""
    deadline = time.monotonic() + wait
    while stop is None or not stop.is_set():
        left = deadline - time.monotonic()
        delivery = subscription.receive(max(0.0, min(left, _POLL)))
        if delivery is not None or left <= _POLL:
            return delivery
    return None


def _moves(value: str) -> int:
    """The move count a ``x-dlq-moves`` header holds; 0 for anything but ASCII digits."""
    if value.isascii() and value.isdigit():
        with suppress(ValueError):  # more digits than int() takes
            return int(value)
    return 0


def _republish(broker: Broker, delivery: Delivery, target: str) -> None:
    headers = {
        key: value
        for key, value in delivery.headers.items()
        if not key.lower().startswith(RESERVED_HEADER_PREFIX)
    }
    headers[MOVES_HEADER] = str(_moves(headers.get(MOVES_HEADER, "0")) + 1)
    # the bytes it was stored as, with its content type (publish sends bytes as they are)
    broker.publish(target, delivery.payload, headers=headers, content_type=delivery.content_type)


def _group(broker: Broker) -> str | None:
    # Without REPLAY a new group sees only what is published after it joins (on
    # kombu+amqp, a new queue): read the group the dead letters are waiting in.
    needs = Capability.COMPETING | Capability.REPLAY
    return DLQ_GROUP if needs in broker.capabilities else None


def dlq(
    url: UrlArg,
    topic: TopicArg,
    every: Annotated[bool, typer.Option("--all", help="Move every dead letter back.")] = False,
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Move this dead letter back (repeat for more)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would move; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="How long to wait for the next dead letter before taking all as read.",
        ),
    ] = READ_WAIT,
) -> None:
    """List TOPIC's dead letters (id, reason, deliveries, age, body); with --all or
    --id, move them back to their original topic.

    A moved message keeps its headers, gains x-dlq-moves (how many times it was
    moved back) and gets a new id. The dead letters are read with the group
    "brokerkit-dlq" on a backend that replays a topic to a new group (else with the
    dead-letter topic's default group) and those not moved are handed back; on a
    backend that counts deliveries, listing counts one on each (max_deliveries is not
    applied here). Ctrl-C stops after the dead letter in hand is moved, never between
    its republish and its removal; the exit status is then 130. A second Ctrl-C
    stops at once (a broker that does not answer), never inside a move. A backend without
    dead letters is an error. Nothing is read, and nothing created, for a topic that
    inspect counts no dead letter of (a mistyped one).
    """
    if not (math.isfinite(wait) and wait >= 0):
        raise typer.BadParameter(
            f"must be a finite number of seconds, 0 or more, got {wait!r}", param_hint="--wait"
        )
    if every and ids:
        raise typer.BadParameter("give --all or --id, not both", param_hint="--all")
    sys.stdout.flush()  # stdout closed (>&-): fail before moving a dead letter
    # max_deliveries=None: reading a dead letter must never dead-letter it again.
    with connect(url, max_deliveries=None) as broker, stop_on_interrupt(twice_stops=True) as stop:
        broker.require(Capability.DEAD_LETTER, "keep dead letters to list or move back")
        listed = move_dead_letters(
            broker, topic, ids=ids or (), every=every, dry_run=dry_run, wait=wait, stop=stop
        )
    missing = sorted(set(ids or ()) - {d.id for d in listed})
    if as_json:
        print_json(out, [d.__dict__ for d in listed])
    else:
        out.print(_table(listed, broker.dead_letter_topic(topic), moving=every or bool(ids)))
    moved = sum(1 for d in listed if d.moved_to is not None)
    failed = [d for d in listed if d.error is not None]
    if every or ids:
        verb = "would move" if dry_run else "moved"
        err.print(f"{verb} {moved} of {len(listed)} dead letter{'s' * (len(listed) != 1)}")
    for letter in failed:
        err.print(cell(f"could not move {letter.id}: {letter.error}", err), style="red")
    stop.exit_if_interrupted()
    if missing:
        raise BrokerError(
            f"no dead letter of {topic!r} has the id {', '.join(missing)}; "
            "list them with 'brokerkit dlq URL TOPIC'"
        )
    if failed:
        raise BrokerError(
            f"{len(failed)} dead letter{'s' * (len(failed) != 1)} of {topic!r} could not be "
            "moved back and stay in the dead-letter topic (see above)"
        )


def _table(listed: list[DeadLetter], source: str, *, moving: bool) -> Table:
    table = Table(title=cell(f"{len(listed)} dead letters in {source!r}"))
    columns = ["id", "reason", "deliveries", "age", "original topic", "body"]
    if moving:
        columns.append("moved to")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "id")
    for letter in listed:
        row: list[Any] = [
            letter.id,
            letter.reason,
            letter.deliveries,
            "-" if letter.age is None else f"{letter.age:.0f} s",
            letter.original_topic,
            letter.body,
        ]
        if moving:
            row.append(letter.moved_to or ("not moved: see below" if letter.error else ""))
        table.add_row(*(cell(c) for c in row))
    return table
