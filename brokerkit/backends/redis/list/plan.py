"""What every script call on a redis+list topic sends (no I/O: shared by the sync and
async broker)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from typing import Any

from brokerkit.backends.redis.list.keys import ListKeys
from brokerkit.backends.redis.list.options import RedisListOptions

__all__ = ["TopicPlan", "consumer_of", "new_nonce"]


class TopicPlan:
    """A topic's keys, and the keys and first arguments of every script call on it
    (see :mod:`.scripts`), computed once per topic.

    :ivar keys: the topic's keys.
    :ivar script_keys: the ``KEYS`` of every script call.
    :ivar common: the first ``ARGV`` of every script call (the script's preamble).
    """

    __slots__ = ("common", "keys", "script_keys")

    def __init__(self, keys: ListKeys, topic: str, options: RedisListOptions) -> None:
        self.keys = keys
        self.script_keys = keys.script_keys()
        self.common: list[Any] = [
            keys.processing_prefix,
            keys.leases_prefix,
            options.max_deliveries or 0,
            topic,
            options.raw_content_type or "",
            int(options.heartbeat * 1000),
        ]

    def keys_for(self, consumers: Iterable[str]) -> list[str]:
        """The ``KEYS`` of a script call that may touch these consumers' processing
        lists and lease hashes: the fixed keys, then two per consumer."""
        extra: list[str] = []
        for consumer in dict.fromkeys(consumers):
            extra.append(self.keys.processing(consumer))
            extra.append(self.keys.leases(consumer))
        return [*self.script_keys, *extra]


def consumer_of(name: str) -> str:
    """The consumer a receipt (``<nonce><seq>:<consumer>``) or a lease group names."""
    return name.partition(":")[2]


def new_nonce() -> str:
    """A fresh receipt prefix: receipts are ``<nonce><seq>:<consumer>``, so that a
    consumer that may have lost a reply never reuses a receipt the server knows.

    48 random bits in 8 characters (letters, digits, ``_`` and ``~``: never ``-``,
    ``+`` or ``:``, by which the scripts read receipts and lease groups), then ``-``.
    A receipt is stored twice per delivery (``expiry`` and the lease hash): 4
    characters fewer than 12 hex digits often save an allocation class in each."""
    return base64.b64encode(os.urandom(6), altchars=b"_~").decode() + "-"
