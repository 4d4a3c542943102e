"""How a brokerkit message is carried in an AMQP message, and read back.

The payload is the AMQP body, untouched. The id is ``message_id``, the content type
``content_type``, the publish time ``timestamp`` (whole seconds, for tools) and, with
the headers, one application header ``brokerkit`` holding JSON::

    brokerkit: {"ts": 1700000000.123, "h": {"trace-id": "abc"}}

Headers travel as JSON rather than as AMQP table entries because AMQP table keys are
at most 255 bytes and share a namespace with the server's own ``x-`` headers
(``x-delivery-count``, ``x-death``); a brokerkit header may be any str. A message
another program published (no ``brokerkit`` header) is read as a raw payload whose
str-valued application headers become the headers.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from brokerkit._message import Message
from brokerkit._schedule import finite_seconds
from brokerkit._serializers import BINARY, json_object
from brokerkit.exceptions import InvalidMessage

__all__ = [
    "HEADER",
    "MAX_CONTENT_TYPE_BYTES",
    "attempt_of",
    "check_content_type_size",
    "decode",
    "encode",
]

#: The application header carrying brokerkit's own facts.
HEADER = "brokerkit"
#: Set by quorum queues on every delivery: how many times it was returned before.
DELIVERY_COUNT = "x-delivery-count"
#: AMQP 0-9-1 sends ``content_type`` as a short string: at most 255 bytes of UTF-8.
MAX_CONTENT_TYPE_BYTES = 255


def check_content_type_size(content_type: str) -> None:
    """Refuse a content type AMQP cannot carry, before anything is sent.

    :raises InvalidMessage: it is longer than 255 bytes in UTF-8.
    """
    size = len(content_type.encode("utf-8"))
    if size > MAX_CONTENT_TYPE_BYTES:
        raise InvalidMessage(
            f"the content type {content_type[:40]!r}... is {size} bytes in UTF-8; "
            f"AMQP carries at most {MAX_CONTENT_TYPE_BYTES} bytes; nothing was published. "
            "Use a shorter content type, and carry long parameters in a header"
        )


def encode(message: Message) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """``(body, properties, application headers)`` for kombu's ``prepare_message``."""
    facts: dict[str, Any] = {"ts": message.published_at}
    if message.headers:
        facts["h"] = dict(message.headers)
    properties = {
        "message_id": message.id,
        "timestamp": int(message.published_at),
        "delivery_mode": 2,
    }
    headers = {HEADER: json.dumps(facts, ensure_ascii=False, separators=(",", ":"))}
    return message.payload, properties, headers


def decode(topic: str, body: Any, properties: Any, headers: Any) -> Message:
    """The message an AMQP delivery carries. Never raises: what brokerkit did not
    write (no ``brokerkit`` header, or one that is not a JSON object with a finite
    numeric ``ts`` and str-valued ``h``) is read as a raw payload."""
    payload = _payload(body)
    props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
    table: Mapping[str, Any] = headers if isinstance(headers, Mapping) else {}
    content_type = props.get("content_type")
    if not isinstance(content_type, str) or not content_type:
        content_type = BINARY
    message_id = props.get("message_id")
    message_id = message_id if isinstance(message_id, str) else ""
    facts = _facts(table.get(HEADER))
    if facts is None:
        own = {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, str)}
        published = _seconds(props.get("timestamp"))
        return Message(message_id, topic, payload, content_type, own, published)
    published_at, message_headers = facts
    message_headers.update(_server_dead_letter(table, message_headers))
    return Message(message_id, topic, payload, content_type, message_headers, published_at)


def attempt_of(headers: Any, redelivered: bool) -> int:
    """Which delivery of its message this is: 1 + the quorum queue's delivery count
    (where a queue keeps none, 2 for a redelivery: a lower bound)."""
    table: Mapping[str, Any] = headers if isinstance(headers, Mapping) else {}
    count = table.get(DELIVERY_COUNT)
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count + 1
    return 2 if redelivered else 1


def _payload(body: Any) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")  # a lone surrogate too
    return b""


def _seconds(stamp: Any) -> float:
    """An AMQP ``timestamp`` property (py-amqp reads it as a naive UTC datetime)."""
    if isinstance(stamp, datetime):
        try:
            return float(calendar.timegm(stamp.utctimetuple()))
        except (OverflowError, ValueError):  # an aware one past the calendar's ends
            return 0.0
    return finite_seconds(stamp) or 0.0


def _facts(text: Any) -> tuple[float, dict[str, str]] | None:
    """The publish time and headers in a ``brokerkit`` header, or None if it is not
    brokerkit's."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    facts = json_object(text) if isinstance(text, str) else None
    if facts is None:
        return None
    stamp = facts.get("ts")
    published_at = 0.0 if stamp is None else finite_seconds(stamp)
    if published_at is None:
        return None
    headers = facts.get("h")
    if headers is None:
        headers = {}
    # JSON object keys are str: only the values need a look.
    if not (isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())):
        return None
    return published_at, dict(headers)


def _server_dead_letter(table: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
    """brokerkit's dead-letter headers for a message the *server* dead-lettered (an
    operator's TTL or delivery-limit policy), read from its ``x-death`` record."""
    if "x-dead-letter-reason" in headers:
        return {}  # brokerkit dead-lettered it and said so itself
    reason = table.get("x-first-death-reason")
    if not isinstance(reason, str):
        return {}
    found = {"x-dead-letter-reason": reason}
    exchange = table.get("x-first-death-exchange")
    if isinstance(exchange, str) and "|" in exchange:
        found["x-original-topic"] = exchange.split("|", 1)[1]
    return found
