"""What RabbitMQ closing a channel means, as brokerkit's error (:meth:`Link.call`
raises it): a message over its ``max_message_size``, a declaration refused for
settings that differ, access refused, a name deleted while in use."""

from __future__ import annotations

import re
from typing import Any

import amqp.exceptions  # type: ignore[import-untyped]
from amqp import spec

from brokerkit.exceptions import (
    BrokerError,
    ConnectionFailed,
    IncompatibleTopic,
    InvalidMessage,
)

__all__ = ["channel_error"]

#: The methods whose refusal (PRECONDITION_FAILED) means a name exists with other
#: settings; RabbitMQ refuses others so too (an unknown delivery tag, a consumer_timeout).
_DECLARATIONS = frozenset({spec.Queue.Declare, spec.Exchange.Declare})
#: How RabbitMQ words the refusal of a message over its ``max_message_size``.
_TOO_LARGE = re.compile(r"message size (\d+) is larger than configured max size (\d+)")


def channel_error(exc: Any, text: str, server: str) -> tuple[BrokerError, int | None]:
    """The error to raise for ``exc``, a channel error of py-amqp whose reply is
    ``text`` (secrets hidden), from RabbitMQ at ``server``; with RabbitMQ's
    ``max_message_size`` when the refusal told it (else None)."""
    too_large = _TOO_LARGE.search(text)
    if isinstance(exc, amqp.exceptions.PreconditionFailed) and too_large:
        size, limit = int(too_large.group(1)), int(too_large.group(2))
        return InvalidMessage(
            f"RabbitMQ on {server} refused a message of {size:,} bytes: its "
            f"max_message_size is {limit:,} bytes. Store large payloads elsewhere and "
            "publish a reference, or raise max_message_size in RabbitMQ's "
            "configuration (messages before it in the same batch may have been stored)"
        ), limit
    declaring = getattr(exc, "method_sig", None) in _DECLARATIONS
    if isinstance(exc, amqp.exceptions.PreconditionFailed) and declaring:
        return IncompatibleTopic(
            f"RabbitMQ refused a declaration on {server}: {text}; an exchange or "
            "queue of that name exists with other settings (brokerkit declares durable "
            "fanout exchanges and quorum queues): delete it or choose another prefix"
        ), None
    if isinstance(exc, amqp.exceptions.AccessRefused):
        return ConnectionFailed(f"RabbitMQ refused access on {server}: {text}"), None
    if isinstance(exc, amqp.exceptions.NotFound):
        return IncompatibleTopic(
            f"RabbitMQ on {server}: {text}; a queue or exchange was deleted while "
            "in use: subscribe again to declare it anew"
        ), None
    return BrokerError(f"RabbitMQ closed a channel on {server}: {text}"), None
