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
from brokerkit._serializers import BINARY

__all__ = ["HEADER", "attempt_of", "decode", "encode"]

#: The application header carrying brokerkit's own facts.
HEADER = "brokerkit"
#: Set by quorum queues on every delivery: how many times it was returned before.
DELIVERY_COUNT = "x-delivery-count"


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


def decode(topic: str, body: Any, properties: Mapping[str, Any], headers: Any) -> Message:
    """The message an AMQP delivery carries. Never raises: what brokerkit did not
    write is read as a raw payload."""
    payload = body.encode() if isinstance(body, str) else bytes(body or b"")
    table: Mapping[str, Any] = headers if isinstance(headers, Mapping) else {}
    content_type = properties.get("content_type") or BINARY
    message_id = properties.get("message_id")
    facts = _facts(table.get(HEADER))
    if facts is None:
        own = {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, str)}
        published = _seconds(properties.get("timestamp"))
        return Message(str(message_id or ""), topic, payload, str(content_type), own, published)
    message_headers = dict(facts.get("h") or {})
    message_headers.update(_server_dead_letter(table, message_headers))
    return Message(
        str(message_id or ""),
        topic,
        payload,
        str(content_type),
        message_headers,
        float(facts.get("ts") or 0.0),
    )


def attempt_of(headers: Any, redelivered: bool) -> int:
    """Which delivery of its message this is: 1 + the quorum queue's delivery count
    (where a queue keeps none, 2 for a redelivery: a lower bound)."""
    table: Mapping[str, Any] = headers if isinstance(headers, Mapping) else {}
    count = table.get(DELIVERY_COUNT)
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count + 1
    return 2 if redelivered else 1


def _seconds(stamp: Any) -> float:
    """An AMQP ``timestamp`` property (py-amqp reads it as a naive UTC datetime)."""
    if isinstance(stamp, datetime):
        return float(calendar.timegm(stamp.utctimetuple()))
    return float(stamp) if isinstance(stamp, (int, float)) else 0.0


def _facts(text: Any) -> dict[str, Any] | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    try:
        facts = json.loads(text)
    except ValueError:
        return None
    if not isinstance(facts, dict):
        return None
    headers = facts.get("h")
    if headers is not None and not (
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    ):
        return None
    return facts


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
