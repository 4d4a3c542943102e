"""Stream entries as messages, and the receipt that names one delivery of an entry.

Decoding is the hot loop of every redis+stream consumer: it runs once per message,
so the common entry (``bk1`` header + ``body``) is decoded inline from XREADGROUP's
flat reply, without redis-py building a dict per entry first. No I/O here: the sync
and the asyncio broker both use this module.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from brokerkit._message import Message
from brokerkit.backends.redis._envelope import raw_message
from brokerkit.backends.redis._stream_fields import (
    BODY_FIELD,
    HEADER_FIELD,
    decode_fields,
    fields_message,
    message_from_header,
)
from brokerkit.backends.redis.stream.scripts import pairs

__all__ = ["StreamReceipt", "decode_entry", "id_order", "unparsed"]


class StreamReceipt(NamedTuple):
    """Names one delivery: the entry, and the group member it was delivered to."""

    key: str
    group: str
    entry_id: str
    consumer: str


def decode_entry(
    topic: str,
    flat: list[Any] | dict[bytes, bytes] | None,
    raw_content_type: str | None,
    body_field: bytes = BODY_FIELD,
) -> Message:
    """The message in an entry's flat ``[field, value, ...]`` list (or field dict).

    ``body_field`` names the field that holds the payload (the ``body_field``
    option): brokerkit's own entries are ``bk1`` + that field, and an entry with
    that field alone, as another program writes it, is that field's value as a
    raw payload. Entries written with ``body`` (brokerkit's default) are read too.

    Never raises: an entry whose brokerkit metadata does not parse (another
    program wrote ``id``, ``ct`` and ``ts`` fields that are not ours, a header
    that is not JSON, bytes that are not UTF-8) is a *raw* message whose payload
    is a JSON object of its fields (bytes that are not UTF-8 as ``\\xff`` escapes:
    :func:`~brokerkit.backends.redis._stream_fields.fields_message`), so that one
    poison entry can never jam its group; its consumer sees it, and can dead-letter it.
    """
    if type(flat) is list and len(flat) == 4 and flat[0] == HEADER_FIELD and flat[2] == body_field:
        message = message_from_header(topic, flat[1], flat[3])
        if message is not None:
            return message
    fields = flat if isinstance(flat, dict) else pairs(flat or [])
    try:
        payload = fields.get(body_field) if body_field != BODY_FIELD else None
        if payload is not None:
            header = fields.get(HEADER_FIELD)
            if header is not None:
                message = message_from_header(topic, header, payload)
                if message is not None:
                    return message
            if len(fields) == 1:
                return raw_message(topic, payload, raw_content_type)
        return decode_fields(topic, fields, raw_content_type)
    except Exception:  # malformed metadata: the entry is delivered as it is
        return fields_message(topic, fields, raw_content_type)


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as the pair Redis orders ids by."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def unparsed(response: Any, **options: Any) -> Any:
    """A redis-py response callback that keeps the reply as the server sent it."""
    return response
