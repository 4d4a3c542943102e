"""Where the command writes: data to stdout, chatter and errors to stderr."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brokerkit._delivery import Delivery
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL, SerializationError

__all__ = ["delivery_record", "err", "out", "printable", "progress_bar", "redact", "text_of"]

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


def text_of(body: Any) -> str:
    """A body as one line of text: str as it is, bytes decoded, anything else as JSON."""
    if isinstance(body, str):
        return body
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return json.dumps(body, ensure_ascii=False, default=str)


def printable(delivery: Delivery, as_json: bool) -> tuple[str, str | None]:
    """The line ``brokerkit consume`` prints for ``delivery``, and why its body did not
    decode (``None`` when it did). An undecodable body is shown raw, never raised."""
    try:
        body = delivery.body
    except SerializationError as exc:
        problem = str(exc)
        if as_json:
            record = delivery_record(delivery, raw=True)
            record["undecodable"] = problem
            return json.dumps(record, ensure_ascii=False, default=str), problem
        return delivery.payload.decode("utf-8", errors="replace"), problem
    if as_json:
        return json.dumps(delivery_record(delivery), ensure_ascii=False, default=str), None
    return text_of(body), None


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
