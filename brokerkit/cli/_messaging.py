"""``brokerkit publish`` and ``brokerkit consume``."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from itertools import islice
from typing import Annotated, Any

import typer
from rich.markup import escape

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._plugins import connect
from brokerkit.cli._admin import TopicArg, stop_on_interrupt
from brokerkit.cli._output import err, printable, writable
from brokerkit.cli._url import UrlArg, command
from brokerkit.exceptions import BrokerClosed, InvalidMessage, Unsupported

__all__ = ["parse_headers", "register"]

#: Lines read from stdin are published this many at a time.
_STDIN_BATCH = 500
#: The most ``publish --count`` takes (the messages are made in memory, all at once).
MAX_COUNT = 1_000_000
#: A lone surrogate: what an undecodable byte of stdin or argv is read as.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: How often a waiting consumer looks at Ctrl-C.
_POLL = 0.25


def register(app: typer.Typer) -> None:
    command(app, "publish", publish)
    command(app, "consume", consume)


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a mapping.

    :raises typer.BadParameter: an item has no ``=``.
    """
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--header")
        headers[key] = value
    return headers


def _count(value: int) -> int:
    if not 1 <= value <= MAX_COUNT:
        raise typer.BadParameter(f"must be a whole number from 1 to {MAX_COUNT:,}, got {value}")
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
    """Publish a message (or stdin's lines) and print each message id on stdout."""
    headers = parse_headers(header or [])
    if body is None:
        raise typer.BadParameter("give a BODY, or '-' to read lines from stdin", param_hint="BODY")
    published = lines = 0
    with connect(url) as broker:
        if body == "-":
            values = (
                _decode(line.rstrip("\r\n"), as_json, number)
                for number, line in enumerate(_stdin_lines(), 1)
            )
            try:
                for chunk in _chunks(values, _STDIN_BATCH):
                    for _ in range(count):
                        ids = broker.publish_many(topic, chunk, headers=headers)
                        sys.stdout.write("".join(f"{i}\n" for i in ids))
                        published += len(ids)
                    lines += len(chunk)
            except typer.BadParameter as exc:
                if not published:
                    raise  # a usage error: nothing was sent
                sys.stdout.flush()
                times = f", {count} times each" if count > 1 else ""
                raise InvalidMessage(
                    f"{exc.message}; the {published} message(s) read before it were "
                    f"published (lines 1 to {lines}{times}; their ids are on stdout), "
                    f"none from line {lines + 1} on"
                ) from None
        else:
            value = _decode(body, as_json)
            ids = broker.publish_many(topic, [value] * count, headers=headers)
            sys.stdout.write("".join(f"{i}\n" for i in ids))
            published = len(ids)
        sys.stdout.flush()
        err.print(escape(f"published {published} message{'s' * (published != 1)} to {topic!r}"))
        if broker.url.scheme == "memory":
            err.print(
                "note: memory:// lives in this process only: the message is gone when this "
                "command exits; publish to a Redis URL to reach another process"
            )


def _stdin_lines() -> Iterator[str]:
    """stdin's lines, each decoded on its own (a byte that does not decode becomes a
    lone surrogate, which :func:`_decode` refuses, naming the line)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream put in place of stdin
        yield from sys.stdin
        return
    encoding = sys.stdin.encoding or "utf-8"
    for line in buffer:
        yield line.decode(encoding, "surrogateescape")


def _decode(text: str, as_json: bool, line: int | None = None) -> Any:
    """The value to publish for ``text`` (BODY, or stdin's line number ``line``).

    :raises typer.BadParameter: ``text`` is not valid text (it held bytes that do not
        decode), or not JSON with ``as_json``.
    """
    where = "" if line is None else f"line {line} of stdin: "
    _check_text(text, where, stdin=line is not None)
    if not as_json:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"{where}not JSON: {exc}: {text[:60]!r}", param_hint="--json"
        ) from None
    except RecursionError:
        raise typer.BadParameter(
            f"{where}JSON nested too deeply to decode (publish it as text, without --json)",
            param_hint="--json",
        ) from None


def _check_text(text: str, where: str, *, stdin: bool) -> None:
    """Refuse ``text`` holding a lone surrogate: a byte of stdin (or of an argument)
    that did not decode, which no message body may carry."""
    bad = _SURROGATE.search(text)
    if bad is None:
        return
    code = ord(bad.group())
    what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
    encoding = getattr(sys.stdin, "encoding", None) if stdin else sys.getfilesystemencoding()
    raise typer.BadParameter(
        f"{where}not valid {encoding or 'Unicode'} text ({what} at character "
        f"{bad.start() + 1}); give text in that encoding",
        param_hint="BODY",
    )


def _require_hand_back(broker: Broker) -> None:
    """:raises Unsupported: ``broker`` has no ACK, so ``--no-ack`` cannot peek: a
    message it delivers is gone once received, with nothing to hand back."""
    if Capability.ACK in broker.capabilities:
        return
    error = Unsupported(
        type(broker).describe(),
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


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(items, size)):
        yield chunk


def consume(
    url: UrlArg,
    topic: TopicArg,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Consume as a member of this group.")
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
        int, typer.Option("--prefetch", min=1, help="Messages fetched per round trip.")
    ] = 1,
    pattern: Annotated[
        bool, typer.Option("--pattern", help="TOPIC is a glob such as 'chat:room:*'.")
    ] = False,
) -> None:
    """Print messages from a topic on stdout, acking each once it is printed.

    Ctrl-C stops after the message in hand is printed and settled; prefetched
    messages go back to the topic; the exit status is then 130. A body that does not
    decode by its content type is printed raw (undecodable bytes replaced; with --json,
    as ``body_raw`` or ``body_base64`` beside ``undecodable``), noted on stderr, and
    settled like any other: one bad message never stops the command.
    """
    received = handed = 0
    held: list[Delivery] = []
    with connect(url) as broker, stop_on_interrupt() as stop:
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
                    # Printing and settling form one step: Ctrl-C only sets `stop`,
                    # so a message is never printed and left unsettled, or acked unprinted.
                    text, problem = printable(delivery, as_json)
                    sys.stdout.write(text + "\n")
                    sys.stdout.flush()
                    if problem:
                        note = f"message {delivery.id}: undecodable, printed raw: {problem}"
                        err.print(escape(writable(note, err)))
                    if no_ack:
                        held.append(delivery)
                    else:
                        delivery.ack()
                    received += 1
        finally:
            if held and not broker.closed:
                broker.nack(*held, requeue=True)
                handed = len(held)
    err.print(
        f"received {received} message{'s' * (received != 1)}"
        + (f"; handed {handed} back unacked" if handed else "")
    )
    stop.exit_if_interrupted()
