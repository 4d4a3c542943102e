"""``brokerkit publish`` and ``brokerkit consume``."""

from __future__ import annotations

import errno
import math
import os
import select
import stat
import sys
from contextlib import suppress
from typing import Annotated, Any

import typer
from rich.markup import escape

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._plugins import connect
from brokerkit._serializers import encode_body
from brokerkit._subscribing import MAX_PREFETCH
from brokerkit.cli._admin import Interrupt, TopicArg, one_line, stop_on_interrupt
from brokerkit.cli._data_output import printable
from brokerkit.cli._input import check_text, decode, decoded, line_batches, text_argument
from brokerkit.cli._output import cell, err, for_terminal
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import (
    BrokerClosed,
    BrokerError,
    InvalidMessage,
    StaleDelivery,
    Unsupported,
)

__all__ = ["parse_headers", "register"]

#: Lines read from stdin are published this many at a time at most (fewer when stdin
#: pauses: see :func:`~brokerkit.cli._stdin.line_batches`).
_STDIN_BATCH = 500
#: ``publish --count N`` publishes this many at a time (Ctrl-C stops between two).
_COUNT_BATCH = 10_000
#: The most ``publish --count`` takes (the messages are made in memory, all at once).
MAX_COUNT = 1_000_000
#: How often a waiting consumer looks at Ctrl-C.
_POLL = 0.25


def register(app: typer.Typer) -> None:
    command(app, "publish", publish)
    command(app, "consume", consume)


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a mapping.

    :raises typer.BadParameter: an item has no ``=``, or holds a byte that did not
        decode (see :func:`~brokerkit.cli._input.check_text`).
    """
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--header")
        check_text(key, "--header", "header name: ")
        check_text(value, "--header", f"value of header {key!r}: ")
        headers[key] = value
    return headers


def _count(value: int) -> int:
    if not 1 <= value <= MAX_COUNT:
        raise typer.BadParameter(f"must be a whole number from 1 to {MAX_COUNT:,}, got {value}")
    return value


def _prefetch(value: int) -> int:
    """Refuse a ``--prefetch`` the subscription would refuse, before connecting."""
    if not 1 <= value <= MAX_PREFETCH:
        raise typer.BadParameter(f"must be a whole number from 1 to {MAX_PREFETCH:,}, got {value}")
    return value


def publish(
    url: UrlArg,
    topic: TopicArg,
    body: Annotated[
        str | None,
        typer.Argument(help="The message body; '-' publishes each line of stdin as a message."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", metavar="KEY=VALUE", help="A header (repeatable)."),
    ] = None,
    count: Annotated[
        int,
        typer.Option(
            "--count",
            "-n",
            callback=_count,
            help=f"Publish the body this many times (1 to {MAX_COUNT:,}).",
        ),
    ] = 1,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="The body is JSON: publish the value it decodes to."),
    ] = False,
) -> None:
    """Publish a message (or stdin's lines) and print each message id on stdout.

    Lines of stdin go out in batches of those that have come (500 at most), so a
    line from a slow pipe (tail -f) is published as it comes. Ctrl-C stops between
    two batches (of stdin, or of 10,000 messages of --count), every id of what went
    out printed, and says on stderr how many were
    published, from which lines; the exit status is then 130. A second Ctrl-C stops
    at once (a broker that does not answer): the batch under way may then be stored
    in part or in whole with no id printed, and the last line says which it was; so
    it does when the broker fails after the first Ctrl-C (its timeout): the exit status
    is still 130.
    Once the reader of stdout has gone (a pipe into head that exited), no further
    batch is published; the exit status is then 1.
    """
    headers = parse_headers(header or [])
    if body is None:
        raise typer.BadParameter("give a BODY, or '-' to read lines from stdin", param_hint="BODY")
    if body == "-" and sys.stdin is None:
        raise typer.BadParameter(
            "stdin is closed (the command was started with <&-): no line to read; give "
            "a BODY, or lines on stdin",
            param_hint="BODY",
        )
    sys.stdout.flush()  # stdout closed (>&-): fail before publishing, not at its ids
    value = None if body == "-" else decode(body, as_json)
    sent = _Sent(topic, count, stdin=body == "-")
    with connect(url) as broker, stop_on_interrupt(twice_stops=True) as stop:
        try:
            if body == "-":
                _publish_lines(broker, topic, headers, as_json, sent, stop)
            else:
                # In batches, so that Ctrl-C stops between two, every id printed.
                content_type = _content_type(broker, as_json)
                for size in _batch_sizes(count, _COUNT_BATCH):
                    if stop.is_set():
                        break
                    sent.publish(broker, [value] * size, headers, content_type, stop)
        except KeyboardInterrupt:
            if not stop.is_set():
                raise
            # A second Ctrl-C: the command stops here, saying what was under way.
        except (BrokerError, OSError) as exc:
            if not stop.overrides(exc):
                raise
            # The broker failed after a Ctrl-C (its timeout): the interrupt ends it.
            sent.failure = one_line(exc)
        sys.stdout.flush()
        if stop.is_set():
            err.print(cell(f"interrupted: {sent.summary()}", err))
        else:
            published = sent.published
            err.print(escape(f"published {published} message{'s' * (published != 1)} to {topic!r}"))
        if broker.url.scheme == "memory":
            err.print(
                "note: memory:// lives in this process only: the message is gone when this "
                "command exits; publish to a Redis URL to reach another process"
            )
    stop.exit_if_interrupted()


class _Sent:
    """What ``publish`` sent so far: the messages (their ids printed) and, from stdin,
    the lines: ``lines`` published ``count`` times each, then the batch of ``batch``
    lines under way, published ``times`` times so far; and ``under_way``, the
    messages of a publish that has not returned (a second Ctrl-C may cut it short, or
    the broker's error after a Ctrl-C: ``failure``, its text)."""

    def __init__(self, topic: str, count: int, *, stdin: bool) -> None:
        self.topic, self.count, self.stdin = topic, count, stdin
        self.published = self.lines = self.batch = self.times = self.under_way = 0
        self.failure: str | None = None

    def publish(
        self,
        broker: Broker,
        bodies: list[Any],
        headers: dict[str, str],
        content_type: str | None,
        stop: Interrupt,
    ) -> None:
        """Publish ``bodies`` to the topic and print their ids.

        A second Ctrl-C (KeyboardInterrupt) may cut the publish short, with
        ``under_way`` left set: some of them may be stored; never the printing of
        their ids (it stops once they are printed).

        :raises BrokenPipeError: the reader of stdout has gone: nothing was published.
        """
        if _reader_gone(sys.stdout):
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        self.under_way = len(bodies)
        ids = broker.publish_many(self.topic, bodies, headers=headers, content_type=content_type)
        with stop.critical():
            self.printed(ids)

    def printed(self, ids: list[str]) -> None:
        """``ids`` went out: print them (at once: they are stored), the one publish of
        them under way (``times``) counted."""
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        sys.stdout.flush()
        self.published += len(ids)
        self.times += 1
        self.under_way = 0

    def summary(self) -> str:
        """How many messages went out, from which lines; for an interrupted command."""
        what = f"published {self.published} message{'s' * (self.published != 1)}"
        failed = f"; then failed: {self.failure}" if self.failure and not self.under_way else ""
        if not self.stdin:
            text = f"{what} of {self.count} to {self.topic!r}; their ids are on stdout"
            if self.under_way:
                more = " more" if self.published else ""
                text += f"; {self.under_way}{more} {self._cut()}"
            return text + failed
        each = f", {self.count} times each" if self.count > 1 else ""
        done = f"lines 1 to {self.lines} of stdin{each}" if self.lines else "no line of stdin"
        next_line = self.lines + 1
        last = self.lines + self.batch
        if self.times:
            done += f"; lines {next_line} to {last} {self.times} of {self.count} times"
        cut = ""
        if self.under_way:
            lines = f"line {last}" if self.batch == 1 else f"lines {next_line} to {last}"
            which = f" (time {self.times + 1} of {self.count})" if self.count > 1 else ""
            cut = f"; {lines}{which} {self._cut()}"
        if self.times or self.under_way:
            next_line = last + 1
        return (
            f"{what} to {self.topic!r} ({done}); their ids are on stdout{cut}; none from line "
            f"{next_line} on{failed}"
        )

    def _cut(self) -> str:
        """What became of the publish a second Ctrl-C (or the broker's error after the
        first) cut short (``under_way``)."""
        one = self.under_way == 1
        ended = (
            f"the publish failed ({self.failure})"
            if self.failure
            else "a second Ctrl-C stopped the command"
        )
        return (
            f"{'was' if one else 'were'} being published when {ended}: "
            f"{'it' if one else 'any of them'} may be stored, with no id printed"
        )


def _publish_lines(
    broker: Broker,
    topic: str,
    headers: dict[str, str],
    as_json: bool,
    sent: _Sent,
    stop: Interrupt,
) -> None:
    """Publish each line of stdin, in batches of what has come (at most
    :data:`_STDIN_BATCH`: see :func:`~brokerkit.cli._stdin.line_batches`), ``sent.count``
    times each, until stdin ends or ``stop`` is set. A signal ends a read of stdin at once (it
    sent nothing), and a batch's publishing only once it is done and its ids printed;
    a second signal at once (see :meth:`_Sent.publish`).

    :raises typer.BadParameter: a line that does not decode, before anything was sent.
    :raises InvalidMessage: a line that does not decode, after some batches were sent.
    """
    chunks = decoded(line_batches(_STDIN_BATCH), as_json)
    content_type = _content_type(broker, as_json)
    try:
        while True:
            try:
                with stop.raising():
                    chunk = next(chunks, None)
            except KeyboardInterrupt:
                return
            if chunk is None:
                return
            sent.batch, sent.times = len(chunk), 0
            while sent.times < sent.count:
                if stop.is_set():
                    return
                sent.publish(broker, chunk, headers, content_type, stop)
            sent.lines += sent.batch
            sent.batch = sent.times = 0
    except typer.BadParameter as exc:
        if not sent.published:
            raise  # a usage error: nothing was sent
        sys.stdout.flush()
        times = f", {sent.count} times each" if sent.count > 1 else ""
        raise InvalidMessage(
            f"{exc.message}; the {sent.published} message(s) read before it were "
            f"published (lines 1 to {sent.lines}{times}; their ids are on stdout), "
            f"none from line {sent.lines + 1} on"
        ) from None


def _reader_gone(stream: Any) -> bool:
    """Whether ``stream`` is a pipe (or socket) whose reader has gone: ``| head -1``
    exited. A write would fail with EPIPE, but only once it reaches the pipe (a
    buffered one later, or never: a large write the reader left halfway ends without
    error), so ``publish`` asks before each batch and publishes none into the void.
    False where it cannot be told (no poll, stdout replaced or not a pipe)."""
    try:
        fd = stream.fileno()
        if not (stat.S_ISFIFO(mode := os.fstat(fd).st_mode) or stat.S_ISSOCK(mode)):
            return False
    except (AttributeError, ValueError, OSError):
        return False
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _content_type(broker: Broker, as_json: bool) -> str | None:
    """With ``--json``, the content type of the broker's serializer: every value goes
    through it, a JSON string too (which ``publish`` would otherwise send as text)."""
    if not as_json:
        return None
    return encode_body(None, broker.options.serializer)[1]


def _batch_sizes(count: int, size: int) -> list[int]:
    return [min(size, count - start) for start in range(0, count, size)]


def _require_hand_back(broker: Broker) -> None:
    """:raises Unsupported: ``broker`` has no ACK, so ``--no-ack`` cannot peek: a
    message it delivers is gone once received, with nothing to hand back."""
    if Capability.ACK in broker.capabilities:
        return
    error = Unsupported(
        broker.describe(),
        Capability.ACK,
        "peek with --no-ack (hold messages unsettled, then hand them back)",
    )
    error.args = (
        f"{error}, so a message it delivers cannot be handed back (it is gone once "
        "received). Nothing was read; consume without --no-ack to read (and so remove) "
        "messages, or peek on a backend with ACK (see 'brokerkit backends')",
    )
    raise error


def _seconds(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(
            f"must be a finite number of seconds, 0 or more (leave it out to wait without "
            f"end), got {value!r}"
        )
    return value


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for a closed or detached one)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def consume(
    url: UrlArg,
    topic: TopicArg,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", "-g", help="Consume as a member of this group.", callback=text_argument
        ),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="Stop after this many messages.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            "-t",
            callback=_seconds,
            help="Stop when no message came for this many seconds.",
        ),
    ] = None,
    no_ack: Annotated[
        bool,
        typer.Option(
            "--no-ack",
            help=(
                "Peek: leave messages unsettled and hand them back (requeued) at the end; "
                "each hand-back counts as a delivery attempt (see max_deliveries). "
                "Refused on a backend without ACK, which cannot hand a message back."
            ),
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per message: id, headers, body...")
    ] = False,
    prefetch: Annotated[
        int,
        typer.Option(
            "--prefetch",
            callback=_prefetch,
            help=f"Messages fetched per round trip (1 to {MAX_PREFETCH:,}).",
        ),
    ] = 1,
    pattern: Annotated[
        bool, typer.Option("--pattern", help="TOPIC is a glob such as 'chat:room:*'.")
    ] = False,
) -> None:
    """Print messages from a topic on stdout, acking each once it is printed.

    Ctrl-C stops after the message in hand is printed and settled; prefetched
    messages go back to the topic; the exit status is then 130. A second Ctrl-C
    stops at once (a broker that does not answer), but never between a message's
    printing and its ack. A body that does not
    decode by its content type is printed raw (undecodable bytes replaced; with --json,
    as body_raw or body_base64 beside undecodable), noted on stderr, and
    settled like any other: one bad message never stops the command. On a terminal,
    a control character of a body (an escape sequence) is shown as a backslash escape
    (\\x1b), line feeds and tabs as they are; a pipe or a file gets the bodies as
    they are.

    Prefer --count to a pipe into head: lines written to the pipe that head never
    read were acked too. A message that could not be written (stdout closed) goes
    back to the topic, and the exit status is then 1.
    """
    received = handed = 0
    terminal = _is_terminal(sys.stdout)
    sys.stdout.flush()  # stdout closed (>&-): fail before receiving a message
    held: list[Delivery] = []
    unprinted: list[Delivery] = []
    with connect(url) as broker, stop_on_interrupt(twice_stops=True) as stop:
        if no_ack:
            _require_hand_back(broker)
        subscription = broker.subscribe(topic, group=group, prefetch=prefetch, pattern=pattern)
        err.print(
            escape(
                f"consuming {topic!r} on {broker.url}" + (f" as group {group!r}" if group else "")
            )
        )
        try:
            with subscription:
                idle = 0.0
                while not stop.is_set() and (count is None or received < count):
                    wait = _POLL if timeout is None else min(_POLL, max(timeout - idle, 0.0))
                    try:
                        delivery = subscription.receive(timeout=wait)
                    except BrokerClosed:
                        break
                    if delivery is None:
                        idle += wait
                        if timeout is not None and idle >= timeout:
                            break
                        continue
                    idle = 0.0
                    # Printing and settling form one step: Ctrl-C only sets `stop`
                    # (a second one raises once the step is done), so a message is never
                    # printed and left unsettled, or acked unprinted.
                    with stop.critical():
                        text, problem = printable(delivery, as_json)
                        if terminal:  # data for the eyes: a body commands the terminal nothing
                            text = for_terminal(text, json_text=as_json)
                        try:
                            sys.stdout.write(text + "\n")
                            sys.stdout.flush()
                        except OSError:
                            # stdout is gone (`| head -2` exited) or full: not printed, so
                            # handed back below with those held, not left leased.
                            unprinted.append(delivery)
                            raise
                        if problem:
                            note = f"message {delivery.id}: undecodable, printed raw: {problem}"
                            err.print(cell(note, err))
                        if no_ack:
                            held.append(delivery)
                        else:
                            delivery.ack()
                        received += 1
        finally:
            if unprinted and Capability.ACK in broker.capabilities and not broker.closed:
                with suppress(StaleDelivery):  # its lease ran out: it is back already
                    broker.nack(*unprinted, requeue=True)
            if held and not broker.closed:
                broker.nack(*held, requeue=True)
                handed = len(held)
    err.print(
        f"received {received} message{'s' * (received != 1)}"
        + (f"; handed {handed} back unacked" if handed else "")
    )
    stop.exit_if_interrupted()
