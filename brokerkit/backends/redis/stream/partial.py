"""The error of a ``publish_many`` cut off part-way (no I/O: the sync and the asyncio
broker both use it)."""

from __future__ import annotations

from brokerkit.backends.redis.stream.options import PUBLISH_CHUNK
from brokerkit.exceptions import BrokerError

__all__ = ["partial_batch"]


def partial_batch(
    error: BrokerError, topic: str, stored: int, total: int, held: bool, maybe: int = 0
) -> BrokerError:
    """The error of a ``publish_many`` that stored (or ``held``, for a delay) the first
    ``stored`` of its ``total`` messages, perhaps the ``maybe`` after them (the script
    whose reply was lost: it may have run), then failed with ``error``: of ``error``'s
    class, with its attributes (a lost server is still :class:`ConnectionFailed`), and
    a message that adds how many were stored."""
    what = "held (delayed)" if held else "stored"
    perhaps = f", perhaps the next {maybe} (its reply was lost)" if maybe else ""
    message = (
        f"{error} -- publish_many {what} the first {stored} of {total} messages to "
        f"topic {topic!r}, in order{perhaps}, and not the other "
        f"{total - stored - maybe}: a batch goes {PUBLISH_CHUNK} messages to a script, "
        "each script all of them or none, one script after another, and none ran after "
        "the one that failed"
    )
    # Built without __init__, whose arguments differ from class to class.
    partial = type(error).__new__(type(error))
    partial.__dict__.update(error.__dict__)
    partial.args = (message,)
    return partial
