"""A published message, as every backend carries it."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from brokerkit._serializers import decode_body

__all__ = ["Message", "new_message_id"]


def new_message_id() -> str:
    """A unique, roughly time-ordered message id (hex milliseconds + 64 random bits)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


@dataclass(frozen=True)
class Message:
    """One message: what the publisher sent, exactly as every consumer sees it.

    :ivar id: unique id given at publish time; it stays the same on redelivery.
    :ivar topic: the topic it was published to.
    :ivar payload: the body as bytes on the wire.
    :ivar content_type: how ``payload`` decodes into :attr:`body`.
    :ivar headers: str to str metadata (trace ids and the like).
    :ivar published_at: the publisher's wall-clock time, in seconds since the epoch.
    """

    id: str
    topic: str
    payload: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)
    published_at: float = 0.0

    @property
    def body(self) -> Any:
        """The body as published: bytes, str, or the serializer's decoding of the payload."""
        return decode_body(self.payload, self.content_type)
