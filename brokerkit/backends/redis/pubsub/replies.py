"""What a subscribed connection's replies mean: published messages, subscription
confirmations, PING answers. Pure functions, shared by every wire and listener."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["is_confirmation", "message_of", "take_messages"]


def is_confirmation(reply: Any, kind: bytes, channel: bytes) -> bool:
    """Whether ``reply`` confirms ``kind`` (``b"subscribe"``, ``b"punsubscribe"``...)
    of ``channel``."""
    return (
        isinstance(reply, list)
        and len(reply) >= 2
        and isinstance(reply[0], bytes)
        and reply[0].lower() == kind
        and reply[1] == channel
    )


def message_of(reply: Any) -> tuple[bytes, bytes] | None:
    """``(channel, data)`` of a published message; None for PING replies and
    subscription confirmations."""
    if not isinstance(reply, list) or not reply or not isinstance(reply[0], bytes):
        return None
    kind = reply[0].lower()
    if kind in (b"message", b"smessage") and len(reply) == 3:
        return reply[1], reply[2]
    if kind == b"pmessage" and len(reply) == 4:
        return reply[2], reply[3]
    return None


def take_messages(
    gets: Callable[[], Any],
    nothing: object,
    received: list[tuple[bytes, bytes]],
    max_messages: int,
) -> bool:
    """Move the complete replies ``gets`` has into ``received`` (as ``(channel, data)``)
    until it holds ``max_messages``; whether any reply was read (a PING answer, a
    confirmation, a message: the connection is alive). No I/O: ``gets`` answers
    from what was already received, ``nothing`` when no reply is complete.

    :raises Exception: the error a reply carries (a broken connection, as the parser
        reports it).
    """
    heard = False
    while len(received) < max_messages:
        reply = gets()
        if reply is nothing:
            return heard
        heard = True
        if isinstance(reply, list):  # hiredis's PushNotification (RESP3) is a list
            if len(reply) == 3 and reply[0] == b"message":
                received.append((reply[1], reply[2]))
                continue
            message = message_of(reply)
            if message is not None:
                received.append(message)
            elif reply and isinstance(reply[0], Exception):
                raise reply[0]
            elif reply and reply[0] == b"sunsubscribe":
                # A cluster unsubscribes a shard channel whose slot moved (or whose
                # node stopped serving it): resubscribe where it lives now.
                raise RedisConnectionError("the shard channel's slot moved to another node")
        elif isinstance(reply, Exception):
            raise reply
    return heard
