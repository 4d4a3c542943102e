"""What is known of the nats-server a NATS connection is to: the process (its
``server_id`` and release), and what its release is known to get wrong."""

from __future__ import annotations

from typing import NamedTuple

from nats.aio.client import ServerVersion

__all__ = ["COUNTS_REDELIVERIES_SINCE", "ServerProcess", "redelivery_count_warning"]

#: The first nats-server release whose delivery count never goes back: before it, a
#: redelivery that found no live pull request could be served again as a first
#: delivery (nats-io/nats-server#5305).
COUNTS_REDELIVERIES_SINCE = (2, 10, 14)


class ServerProcess(NamedTuple):
    """The nats-server process a connection is to: what its ``INFO`` says."""

    #: Its ``server_id``: a standalone server takes a new one each time it starts.
    server_id: str
    #: Its release (major, minor, patch); None if it did not say.
    release: tuple[int, int, int] | None


def redelivery_count_warning(version: ServerVersion) -> str | None:
    """What to warn a consumer of on nats-server ``version``, or None: nothing known
    (nats-py says 0.0.0 when the server did not say) or nothing to fear."""
    try:
        release = (version.major, version.minor, version.patch)
    except ValueError:  # not a semantic version
        return None
    if not (0, 0, 0) < release < COUNTS_REDELIVERIES_SINCE:
        return None
    return (
        f"nats-server {'.'.join(map(str, release))} can hand out a redelivered message "
        "as if for the first time (nats-io/nats-server#5305, fixed in "
        f"{'.'.join(map(str, COUNTS_REDELIVERIES_SINCE))}): Delivery.attempt can then be "
        "1 again, and max_deliveries let a message through more often than it says; "
        "upgrade the server"
    )
