"""What every script call on a redis+list topic sends (no I/O: shared by the sync and
async broker)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from typing import Any

from brokerkit.backends.redis.list.keys import ListKeys
from brokerkit.backends.redis.list.options import RedisListOptions

__all__ = [
    "CHUNK_BYTES",
    "FETCH_BYTES",
    "MOVE_BYTES",
    "TopicPlan",
    "as_text",
    "batch_of",
    "batch_runs",
    "batches_for",
    "consumer_of",
    "fetch_receipts",
    "moves_for",
    "new_nonces",
    "per_batch",
]

#: About how many bytes of elements a fetch takes at most (see FETCH), by the mean
#: size of the consumer's last fetch: Redis runs one fetch at a time.
FETCH_BYTES = 4 << 20
#: About how many bytes of elements a fetch moves at a time, each move a batch of its
#: own (see FETCH).
CHUNK_BYTES = 256 << 10
#: From this mean size of the elements of a consumer's last fetch, its next one moves
#: them with ``LMOVE`` in a transaction instead of the script's ``SORT`` (see FETCH,
#: *Moves*): on Redis 7.0 here, a ``SORT`` that stores 100 elements cost Redis less
#: than 100 ``LMOVE`` up to about 4 KB an element and 1.3-1.8x them from 6 KB up,
#: where the moves and the script cost 0.9-1.25x them.
MOVE_BYTES = 4096


class TopicPlan:
    """A topic's keys, and the keys and first arguments of every script call on it
    (see :mod:`.scripts`), computed once per topic.

    :ivar keys: the topic's keys.
    :ivar script_keys: the ``KEYS`` of every script call.
    :ivar common: the first ``ARGV`` of every script call (the script's preamble).
    :ivar topic: the topic.
    """

    __slots__ = ("common", "keys", "script_keys", "topic")

    def __init__(self, keys: ListKeys, topic: str, options: RedisListOptions) -> None:
        self.keys = keys
        self.topic = topic
        # the scripts name the fetches hashes and batches after the lease hashes
        stem = keys.leases_prefix.removesuffix("leases:")
        assert keys.fetches_prefix == stem + "fetches:"
        assert keys.batches_prefix == stem + "batch:"
        assert keys.moving_prefix == stem + "moving:"
        self.script_keys = keys.script_keys()
        self.common: list[Any] = [
            keys.processing_prefix,
            keys.leases_prefix,
            options.max_deliveries or 0,
            topic,
            options.raw_content_type or "",
            int(options.heartbeat * 1000),
        ]

    def fetch_args(
        self, consumer: str, count: int, lease_ms: int, nonce: str, element_size: int
    ) -> list[Any]:
        """The ``ARGV`` of a FETCH call up to its mode (see :data:`.scripts.FETCH`):
        the common ones, then ``consumer``, ``count``, ``lease_ms``, the fetch's first
        ``nonce`` and the mean ``element_size`` of the consumer's last fetch."""
        return [*self.common, consumer, count, lease_ms, nonce, element_size]

    def keys_for(self, consumers: Iterable[str], names: Iterable[str] = ()) -> list[str]:
        """The ``KEYS`` of a script call that may touch these consumers' processing
        lists, lease hashes, fetches hashes and moving keys, and the batches of these
        receipts or lease groups (``<nonce><seq>:<consumer>``,
        ``<nonce><first>+<n>:<consumer>``): the fixed keys, then four per consumer,
        then one per batch."""
        keys = self.keys
        extra: list[str] = []
        for consumer in dict.fromkeys(consumers):
            extra.append(keys.processing_prefix + consumer)
            extra.append(keys.leases_prefix + consumer)
            extra.append(keys.fetches_prefix + consumer)
            extra.append(keys.moving_prefix + consumer)
        prefix = keys.batches_prefix
        for name in names:
            batch = batch_of(name)
            if batch:
                extra.append(prefix + batch)
        return [*self.script_keys, *dict.fromkeys(extra)]


def as_text(value: bytes | str) -> str:
    """A name Redis returned (a key, a member, a type), as text."""
    return value.decode() if isinstance(value, bytes) else value


def batch_of(name: str) -> str | None:
    """``<nonce>:<consumer>``, the batch a receipt or lease group names (see
    :mod:`.scripts`), or None for a name without a nonce."""
    dash = name.find("-")
    colon = name.find(":")
    if dash < 0 or colon < dash:
        return None
    return name[: dash + 1] + name[colon:]


def batch_runs(receipts: Iterable[str]) -> list[str | int]:
    """These receipts as the SETTLE script's ack and the EXTEND script read them: per
    run of receipts of one batch, its name ``<nonce>:<consumer>``, how many, and the
    index of each (the digits between the nonce and the ``:``), so that the scripts
    read no receipt apart."""
    out: list[str | int] = []
    prefix = suffix = ""
    count_at = -1
    for receipt in receipts:
        # (a receipt without a nonce, an earlier version's, is a run of its own: an
        # empty prefix would take in the receipts of the consumer's batches too)
        if count_at < 0 or not (prefix and receipt.startswith(prefix) and receipt.endswith(suffix)):
            colon = receipt.find(":")
            dash = receipt.find("-", 0, colon)  # no nonce: an index of batch ":<consumer>"
            prefix, suffix = receipt[: dash + 1], receipt[colon:]
            out += [prefix + suffix, 0]
            count_at = len(out) - 1
        out.append(receipt[len(prefix) : len(receipt) - len(suffix)])
        out[count_at] += 1  # type: ignore[operator]
    return out


def consumer_of(name: str) -> str:
    """The consumer a receipt (``<nonce><seq>:<consumer>``) or a lease group names."""
    return name.partition(":")[2]


#: How many batches a consumer's first fetch may lease (the script sizes it by the
#: next element out: see FETCH).
FIRST_BATCHES = 4


def per_batch(element_size: int) -> int:
    """How many elements of about ``element_size`` bytes (more than 0) a batch holds:
    about ``CHUNK_BYTES`` of them, rounded as FETCH rounds it."""
    return max((CHUNK_BYTES + element_size // 2) // element_size, 1)


def batches_for(count: int, element_size: int) -> int:
    """How many batches (each with a nonce of its own) a fetch of up to ``count``
    elements of about ``element_size`` bytes (0: not known yet, then up to
    ``FIRST_BATCHES``) may lease: one an about ``CHUNK_BYTES``, of at most about
    ``FETCH_BYTES`` in all (see FETCH)."""
    if element_size <= 0:
        return max(min(count, FIRST_BATCHES), 1)
    return max(-(-moves_for(count, element_size) // per_batch(element_size)), 1)


def moves_for(count: int, element_size: int) -> int:
    """How many ``LMOVE`` a fetch of up to ``count`` elements of about ``element_size``
    bytes (more than 0) sends: about ``FETCH_BYTES`` of them, as FETCH sizes a fetch."""
    return max(min(count, FETCH_BYTES // element_size), 1)


def fetch_receipts(
    nonces: Sequence[str], batches: Sequence[Sequence[bytes]], consumer: str
) -> tuple[list[str], list[str | int]]:
    """The receipts of a fetch's deliveries, in order, from the nonces it offered and
    the elements each of their batches holds (none: a batch it did not need); and its
    batches as an ack or extension of the whole fetch names them: each one's name and
    minus its size (see SETTLE)."""
    suffix = ":" + consumer
    receipts = [
        f"{nonce}{index}{suffix}"
        for nonce, batch in zip(nonces, batches, strict=True)
        for index in range(len(batch))
    ]
    runs: list[str | int] = []
    for nonce, batch in zip(nonces, batches, strict=True):
        if batch:
            runs += [nonce + suffix, -len(batch)]
    return receipts, runs


#: The last character of each nonce of one fetch, in order, so that its batches sort in
#: the order they were fetched, bytewise (a sorted set) and in any usual collation (a
#: Lua comparison: Redis sets ``LC_COLLATE`` from its environment); see
#: :func:`new_nonces`. A fetch leases at most 23 batches (see :func:`batches_for`).
_IN_ORDER = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_nonces(count: int) -> list[str]:
    """Fresh receipt prefixes for one fetch, one a batch it may lease: a batch's
    receipts are ``<nonce><i>:<consumer>`` (``i`` from 0) and its list is named after its
    nonce, so that a consumer that may have lost a reply never reuses a receipt the
    server knows.

    Each is 42 random bits in 7 characters (letters, digits, ``_`` and ``~``: never
    ``-``, ``+`` or ``:``, by which the scripts read receipts and lease groups), one of
    those characters that orders the fetch's batches as a string does (a rescue hands
    back one fetch's deliveries in order by them), then ``-``: shorter than 12 hex
    digits, which often saves an allocation class in each ``expiry`` field. A fetch
    refuses a nonce whose batch exists (see FETCH)."""
    if not 1 <= count <= len(_IN_ORDER):
        raise ValueError(f"a fetch offers 1 to {len(_IN_ORDER)} batches, not {count}")
    stem = base64.b64encode(os.urandom(6), altchars=b"_~").decode()[:7]
    return [f"{stem}{_IN_ORDER[j]}-" for j in range(count)]
