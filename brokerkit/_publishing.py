"""Turning the bodies given to ``publish_many`` into messages: no I/O.

Every body is encoded here before the broker sends anything, so that one bad body
publishes none of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from brokerkit._message import Message, new_message_ids
from brokerkit._options import BrokerOptions
from brokerkit._serializers import BINARY, encode_body
from brokerkit.exceptions import InvalidMessage

__all__ = ["Publisher", "build_messages"]


class Publisher(Protocol):
    """What :func:`build_messages` reads of a broker (sync or asyncio)."""

    @property
    def options(self) -> BrokerOptions: ...

    @property
    def max_payload_bytes(self) -> int | None: ...

    def describe(self) -> str: ...


def build_messages(
    broker: Publisher,
    topic: str,
    bodies: Iterable[Any],
    checked_headers: dict[str, str],
    content_type: str | None,
) -> list[Message]:
    """One new message per body, in order, all stamped now: each body encoded by the
    broker's serializer (unless it is bytes, or ``content_type`` says otherwise).

    :raises SerializationError: a body cannot be encoded.
    :raises InvalidMessage: an encoded body is larger than the broker's
        ``max_payload_bytes``.
    """
    serializer = broker.options.serializer
    now = time.time()
    limit = broker.max_payload_bytes
    items = bodies if isinstance(bodies, (list, tuple)) else list(bodies)
    messages = []
    for message_id, body in zip(new_message_ids(len(items)), items, strict=True):
        if type(body) is bytes and content_type is None:
            payload, ctype = body, BINARY  # what encode_body gives, without the call
        else:
            payload, ctype = encode_body(body, serializer, content_type)
        if limit is not None and len(payload) > limit:
            raise InvalidMessage(
                f"a body of {len(payload):,} bytes is larger than {broker.describe()} can "
                f"store in one message ({limit:,} bytes); nothing was published. Store "
                "large payloads elsewhere and publish a reference to them"
            )
        messages.append(Message(message_id, topic, payload, ctype, checked_headers, now))
    return messages
