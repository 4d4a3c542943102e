"""Turning the bodies given to ``publish_many`` into messages: no I/O.

Every body is encoded here before the broker sends anything, so that one bad body
publishes none of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from brokerkit._message import Message, new_message_ids
from brokerkit._options import BrokerOptions
from brokerkit._serializers import BINARY, encode_body
from brokerkit.exceptions import InvalidMessage

__all__ = ["Publisher", "build_messages", "check_bodies"]


class Publisher(Protocol):
    """What :func:`build_messages` reads of a broker (sync or asyncio)."""

    @property
    def options(self) -> BrokerOptions: ...

    @property
    def max_payload_bytes(self) -> int | None: ...

    def describe(self) -> str: ...


def check_bodies(bodies: object) -> list[Any] | tuple[Any, ...]:
    """The bodies given to ``publish_many``, as a list or tuple, read once.

    :raises InvalidMessage: ``bodies`` is one body (a str, bytes or dict: refused
        rather than split up) or not an iterable at all (None, a number...).
    """
    if isinstance(bodies, (list, tuple)):
        return bodies
    if isinstance(bodies, (str, bytes, bytearray, memoryview, Mapping)):
        raise InvalidMessage(
            f"publish_many takes an iterable of bodies, not one {type(bodies).__name__} "
            "body; use publish() for one message, or wrap it in a list"
        )
    try:
        iterator = iter(bodies)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidMessage(
            f"publish_many takes an iterable of bodies (a list, a tuple, a generator...), "
            f"not {type(bodies).__name__}; use publish() for one message"
        ) from None
    return list(iterator)


def build_messages(
    broker: Publisher,
    topic: str,
    bodies: Iterable[Any],
    checked_headers: dict[str, str],
    content_type: str | None,
) -> list[Message]:
    """One new message per body, in order, all stamped now: each body encoded by the
    broker's serializer, or the one ``content_type`` names (bytes as they are).

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
