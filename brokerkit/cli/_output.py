"""Where the command writes: data to stdout, chatter and errors to stderr."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console

from brokerkit._delivery import Delivery
from brokerkit._url import BrokerURL
from brokerkit.exceptions import InvalidURL

__all__ = ["delivery_record", "err", "out", "redact", "text_of"]

#: Data: message bodies, ids, tables, JSON.
out = Console(soft_wrap=True)
#: Progress, notes and errors, so that stdout stays data.
err = Console(stderr=True, soft_wrap=True)


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


def delivery_record(delivery: Delivery) -> dict[str, Any]:
    """A delivery as a JSON-ready mapping: id, topic, attempt, headers, body."""
    record: dict[str, Any] = {
        "id": delivery.id,
        "topic": delivery.topic,
        "attempt": delivery.attempt,
        "content_type": delivery.content_type,
        "published_at": delivery.message.published_at,
        "headers": dict(delivery.headers),
    }
    body = delivery.body
    if isinstance(body, bytes):
        try:
            record["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(body).decode("ascii")
    else:
        record["body"] = body
    return record
