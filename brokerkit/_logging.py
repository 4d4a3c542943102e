"""The fields every brokerkit log line carries, for structured (JSON) log handlers.

Every record brokerkit writes has the attributes ``topic``, ``group``, ``consumer``
and ``message_id`` (passed as ``extra``): the value when the line is about one, None
when it is not known. A line about several deliveries names their ids joined with
``,`` (and their topics likewise, when they differ).

The loggers, one per part of the library and one per backend family:
``brokerkit`` (the core: subscriptions, cancelled receives), ``brokerkit.hooks``
(a failing plugin hook), ``brokerkit.redis``, ``brokerkit.nats``, ``brokerkit.kombu``
(and ``brokerkit.memory``, which has nothing to say today), ``brokerkit.worker`` (the
worker, where it is installed), and ``brokerkit.instrumentation`` (the Prometheus
collector).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["FIELDS", "LOGGERS", "delivery_fields", "log_fields", "subscription_fields"]

#: The attributes every record brokerkit writes carries.
FIELDS = ("topic", "group", "consumer", "message_id")
#: Every logger brokerkit writes to.
LOGGERS = (
    "brokerkit",
    "brokerkit.hooks",
    "brokerkit.memory",
    "brokerkit.redis",
    "brokerkit.nats",
    "brokerkit.kombu",
    "brokerkit.worker",
    "brokerkit.instrumentation",
)


def log_fields(
    topic: str | None = None,
    group: str | None = None,
    consumer: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """The ``extra`` of a log line: every field, None where not known."""
    return {"topic": topic, "group": group, "consumer": consumer, "message_id": message_id}


def subscription_fields(subscription: Any, deliveries: Iterable[Any] = ()) -> dict[str, Any]:
    """The ``extra`` of a line about one subscription (and some of its deliveries)."""
    ids = ",".join(d.id for d in deliveries) or None
    return log_fields(subscription.topic, subscription.group, subscription.consumer, ids)


def delivery_fields(deliveries: Iterable[Any]) -> dict[str, Any]:
    """The ``extra`` of a line about some deliveries (of one subscription, usually)."""
    listed = list(deliveries)
    if not listed:
        return log_fields()

    def joined(values: Iterable[str]) -> str:
        return ",".join(dict.fromkeys(values))

    subscription = getattr(listed[0], "subscription", None)
    return log_fields(
        joined(d.topic for d in listed),
        getattr(subscription, "group", None),
        getattr(subscription, "consumer", None),
        joined(d.id for d in listed),
    )
