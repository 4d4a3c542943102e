"""Where the command writes: data to stdout, chatter and errors to stderr."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brokerkit._delivery import Delivery
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL, SerializationError

__all__ = [
    "delivery_record",
    "err",
    "json_text",
    "out",
    "print_json",
    "printable",
    "progress_bar",
    "redact",
    "text_of",
    "writable",
]

#: Data: message bodies, ids, tables, JSON.
out = Console(soft_wrap=True)
#: Progress, notes and errors, so that stdout stays data.
err = Console(stderr=True, soft_wrap=True)


def progress_bar(description: str = "{task.description}") -> Progress:
    """A progress bar on stderr (description, bar, done/total, time), gone when done."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def redact(text: str, arguments: Iterable[str]) -> str:
    """``text`` with the password of every URL among ``arguments`` masked.

    brokerkit's own errors never show a password; this guards what a driver or a
    plugin might say.
    """
    for argument in arguments:
        if "://" not in argument:
            continue
        try:
            url = BrokerURL.parse(argument.split("=", 1)[-1])
        except InvalidURL:
            continue
        if url.password:
            text = text.replace(url.render(hide_password=False), str(url))
            text = text.replace(url.password, "***")
    return text


def _encoding(stream: Console | TextIO | None) -> str:
    if isinstance(stream, Console):
        return stream.encoding
    return getattr(stream or sys.stdout, "encoding", None) or "utf-8"


def _fits(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def writable(text: str, stream: Console | TextIO | None = None) -> str:
    """``text`` as ``stream`` (default: stdout) can take it: every character its
    encoding cannot hold, such as a lone surrogate that a JSON ``\\ud800`` escape
    decodes to, written as a backslash escape (``\\ud800``) instead of failing."""
    encoding = _encoding(stream)
    if _fits(text, encoding):
        return text
    return text.encode(encoding, "backslashreplace").decode(encoding)


def json_text(value: Any, stream: Console | TextIO | None = None) -> str:
    """``value`` as one line of JSON that ``stream`` (default: stdout) can take:
    non-ASCII characters as they are where its encoding holds them all, else (a lone
    surrogate, an ASCII terminal) every one as a ``\\uXXXX`` escape."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if _fits(text, _encoding(stream)):
        return text
    return json.dumps(value, ensure_ascii=True, default=str)


def print_json(console: Console, value: Any) -> None:
    """Pretty-print ``value`` as JSON on ``console``, escaping what its encoding
    cannot hold (see :func:`json_text`)."""
    escaped = not _fits(json.dumps(value, ensure_ascii=False, default=str), console.encoding)
    console.print_json(json.dumps(value, default=str), ensure_ascii=escaped)


def text_of(body: Any) -> str:
    """A body as one line of text: str as it is, bytes decoded, anything else as JSON."""
    if isinstance(body, str):
        return body
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return json.dumps(body, ensure_ascii=False, default=str)


def printable(delivery: Delivery, as_json: bool) -> tuple[str, str | None]:
    """The line ``brokerkit consume`` prints for ``delivery`` (one that stdout can take:
    see :func:`writable` and :func:`json_text`), and why its body did not decode
    (``None`` when it did). An undecodable body is shown raw, never raised."""
    try:
        body = delivery.body
    except SerializationError as exc:
        problem = str(exc)
        if as_json:
            record = delivery_record(delivery, raw=True)
            record["undecodable"] = problem
            return json_text(record), problem
        return writable(delivery.payload.decode("utf-8", errors="replace")), problem
    if as_json:
        return json_text(delivery_record(delivery)), None
    return writable(text_of(body)), None


def delivery_record(delivery: Delivery, *, raw: bool = False) -> dict[str, Any]:
    """A delivery as a JSON-ready mapping: id, topic, attempt, headers, body.

    The body is ``body`` (decoded, or the payload's text when it is UTF-8 and ``raw``
    asks for the payload), else ``body_base64``.
    """
    record: dict[str, Any] = {
        "id": delivery.id,
        "topic": delivery.topic,
        "attempt": delivery.attempt,
        "content_type": delivery.content_type,
        "published_at": delivery.message.published_at,
        "headers": dict(delivery.headers),
    }
    body = delivery.payload if raw else delivery.body
    if isinstance(body, bytes):
        try:
            record["body_raw" if raw else "body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(body).decode("ascii")
    else:
        record["body"] = body
    return record
