"""The error for a settlement the master applied but too few replicas confirmed in time
(the ``replicas`` option), shared by redis+list and redis+stream (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from brokerkit._url import BrokerURL
from brokerkit.exceptions import ReplicationTimeout

__all__ = ["unconfirmed_settlement"]


def unconfirmed_settlement(
    url: BrokerURL,
    what: str,
    deliveries: Sequence[Any],
    short: Mapping[str, int],
    stale: Sequence[Any],
    *,
    replicas: int,
    timeout: float,
) -> ReplicationTimeout:
    """The :class:`ReplicationTimeout` for the ``what`` ("ack", "nack") of
    ``deliveries``, applied on the master everywhere, whose replicas fell short for the
    topics of ``short`` (topic -> how many confirmed); ``stale``: those it left to
    another consumer (they are the error's :attr:`~ReplicationTimeout.stale`)."""
    topics = sorted(short)
    confirmed = sorted({d.subscription.topic for d in deliveries} - set(topics))
    least = min(short.values())
    applied = len(deliveries) - len(stale)
    count = f"{applied} deliver{'y' if applied == 1 else 'ies'}"
    message = (
        f"Redis at {url} applied the {what} of {count} on the master, but only "
        f"{least} of the {replicas} replicas asked for (replicas=) confirmed "
        f"it within {timeout:g} s (replica_timeout=) for the topic"
        f"{'s' if len(topics) > 1 else ''} {', '.join(map(repr, topics))}"
    )
    if confirmed:
        message += f" (confirmed for {', '.join(map(repr, confirmed))})"
    message += "; a failover now may lose it"
    if stale:
        ids = ", ".join(d.id for d in stale[:5])
        more = "" if len(stale) <= 5 else f" and {len(stale) - 5} more"
        message += (
            f". Not settled by it: message {ids}{more}, whose lease had expired "
            "(another consumer claimed it)"
        )
    return ReplicationTimeout(message, acknowledged=least, wanted=replicas, stale=stale)
