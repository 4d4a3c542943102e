"""Published values back into messages: the envelope without headers (by far the most
common one) read with one regex match, anything else through the envelope module."""

from __future__ import annotations

import math
import re

from brokerkit._message import Message
from brokerkit.backends.redis._envelope import decode

__all__ = ["decode_published"]

#: The envelope exactly as :func:`~brokerkit.backends.redis._envelope.encode` writes
#: a message without headers: JSON strings without escapes or control characters,
#: and a JSON number.
_PLAIN_ENVELOPE = re.compile(
    rb'BK1\{"id":"([^"\\\x00-\x1f]+)","ct":"([^"\\\x00-\x1f]*)",'
    rb'"ts":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\}\n'
)
_CONTENT_TYPES: dict[bytes, str] = {}


def decode_published(topic: str, data: bytes) -> Message:
    """The message in a published value: what
    :func:`~brokerkit.backends.redis._envelope.decode` returns, faster for the
    envelope of a message without headers, by far the most common one."""
    match = _PLAIN_ENVELOPE.match(data)
    if match is None:
        return decode(topic, data)
    message_id, content_type, published_at = match.groups()
    ctype = _CONTENT_TYPES.get(content_type)
    try:
        if ctype is None:
            ctype = content_type.decode()
            if len(_CONTENT_TYPES) < 256:
                _CONTENT_TYPES[content_type] = ctype
        published = float(published_at)
        if not math.isfinite(published):  # 1e999: the full decoder makes it raw
            return decode(topic, data)
        return Message(message_id.decode(), topic, data[match.end() :], ctype, {}, published)
    except (UnicodeDecodeError, ValueError, OverflowError):
        return decode(topic, data)
