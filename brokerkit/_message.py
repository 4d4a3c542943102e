"""A published message, as every backend carries it."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from brokerkit._serializers import decode_body

__all__ = ["Message", "new_message_id", "new_message_ids"]


class _IdSource:
    """Per-process random bits and a counter, renewed in a forked child."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.process = os.urandom(6).hex()
        # next() on itertools.count is atomic: no lock is needed between threads.
        self.counter = itertools.count()


_ids = _IdSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.reset)


def new_message_id() -> str:
    """A unique, roughly time-ordered message id: hex milliseconds, 48 random bits
    drawn once per process, and a per-process counter (28 hex digits in all)."""
    return f"{time.time_ns() // 1_000_000:012x}{_ids.process}{next(_ids.counter) & 0xFFFF:04x}"


def new_message_ids(count: int) -> list[str]:
    """``count`` ids, each as :func:`new_message_id` would give it at that moment (the
    clock is read for every id; only the text of a millisecond already seen is reused)."""
    clock, counter, process = time.time_ns, _ids.counter, _ids.process
    ids = []
    seen, prefix = -1, ""
    for _ in range(count):
        millisecond = clock() // 1_000_000
        if millisecond != seen:
            seen, prefix = millisecond, f"{millisecond:012x}{process}"
        # hex() of 0x1XXXX is "0x1" and the 4 digits :04x would give, at half the cost.
        ids.append(prefix + hex(next(counter) & 0xFFFF | 0x10000)[3:])
    return ids


@dataclass(slots=True, repr=False)
class Message:
    """One message: what the publisher sent, exactly as every consumer sees it.
    Treat it as read-only: backends share one instance between deliveries.

    Its ``repr()`` (and ``str()``) names the message, its size and how many headers
    it has, never the payload nor a header: a message in a log line or a traceback
    shows no body and no token carried in a header.

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
        """The body as published: bytes, str, or the serializer's decoding of the payload.

        :raises SerializationError: the payload does not decode as :attr:`content_type`
            says (another program wrote it, or it is corrupt); this is the only error
            it raises, and :attr:`payload` still holds the bytes.
        """
        return decode_body(self.payload, self.content_type)

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id!r}, topic={self.topic!r}, "
            f"content_type={self.content_type!r}, payload={len(self.payload)} bytes, "
            f"headers={len(self.headers)}, published_at={self.published_at!r})"
        )

    @classmethod
    def _many(
        cls,
        topic: str,
        ids: Sequence[str],
        payloads: Sequence[bytes],
        content_types: Sequence[str],
        published: Sequence[float],
        headers: Sequence[dict[str, str]] | None = None,
    ) -> list[Message]:
        """One message per id, exactly as ``Message(id, topic, payload, content_type,
        headers, published_at)`` makes each (``headers`` None: a dict of its own
        each, empty): a consumer's fetch makes a batch at once, and setting the
        slots here costs a third of a call to ``__init__`` each
        (tests/test_redis_stream_batch.py compares every slot with what ``__init__``
        gives)."""
        count = len(ids)
        # The instances are made first, in one call (map runs object.__new__ in C).
        messages: list[Message] = list(map(object.__new__, itertools.repeat(cls, count)))
        for message, message_id, payload, content_type, published_at, extra in zip(
            messages,
            ids,
            payloads,
            content_types,
            published,
            itertools.repeat(None, count) if headers is None else headers,
            strict=True,
        ):
            message.id = message_id
            message.topic = topic
            message.payload = payload
            message.content_type = content_type
            message.headers = {} if extra is None else extra
            message.published_at = published_at
        return messages
