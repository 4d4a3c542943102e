"""What the commands print as data on stdout: values as valid JSON (a NaN or an
infinity as a string), bodies as one line of text, deliveries as the line ``consume``
prints or as a JSON-ready record; each as the stream can take it (see
:func:`~brokerkit.cli._output.writable`).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, TextIO

from rich.console import Console

from brokerkit._delivery import Delivery
from brokerkit.cli._output import encoding_of, fits, writable
from brokerkit.exceptions import SerializationError

__all__ = ["delivery_record", "json_dumps", "json_text", "print_json", "printable", "text_of"]


def json_dumps(value: Any, *, ensure_ascii: bool = False) -> str:
    """``value`` as valid JSON (``json.dumps`` with ``default=str``): a float that
    JSON has no token for (NaN, an infinity, which msgpack carries) is written as the
    string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, never as Python's bare
    ``NaN``, which JSON parsers refuse."""
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, default=str, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere (else a cycle: raised again)
        return json.dumps(_finite(value), ensure_ascii=ensure_ascii, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (values and map keys) as its string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {_finite(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_text(value: Any, stream: Console | TextIO | None = None) -> str:
    """``value`` as one line of valid JSON (see :func:`json_dumps`) that ``stream``
    (default: stdout) can take: non-ASCII characters as they are where its encoding
    holds them all, else (a lone surrogate, an ASCII terminal) every one as a
    ``\\uXXXX`` escape."""
    text = json_dumps(value)
    if fits(text, encoding_of(stream)):
        return text
    return json_dumps(value, ensure_ascii=True)


def print_json(console: Console, value: Any) -> None:
    """Pretty-print ``value`` as valid JSON (see :func:`json_dumps`) on ``console``,
    escaping what its encoding cannot hold (see :func:`json_text`)."""
    escaped = not fits(json_dumps(value), console.encoding)
    console.print_json(json_dumps(value, ensure_ascii=True), ensure_ascii=escaped)


def text_of(body: Any) -> str:
    """A body as one line of text: str as it is, bytes decoded, anything else as
    valid JSON (see :func:`json_dumps`)."""
    if isinstance(body, str):
        return body
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return json_dumps(body)


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
