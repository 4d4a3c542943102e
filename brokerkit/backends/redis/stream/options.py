"""The options of ``redis+stream://`` URLs, and what a subscription remembers (no I/O:
used by the sync and the asyncio broker alike)."""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass
from typing import Any

from brokerkit.backends.redis._envelope import HEADER_FIELD
from brokerkit.backends.redis._options import RedisOptions
from brokerkit.backends.redis.stream.keys import check_stream_key
from brokerkit.exceptions import InvalidOption

__all__ = ["PUBLISH_CHUNK", "RedisStreamOptions", "StreamState"]

#: publish_many writes this many messages per script: all or none of each chunk.
PUBLISH_CHUNK = 2000

_FIELD = re.compile(r"[!-~]{1,64}")


@dataclass(frozen=True)
class RedisStreamOptions(RedisOptions):
    """Options of ``redis+stream://`` and ``rediss+stream://`` URLs.

    Retention: XACK does not delete an entry, so a stream grows until it is
    trimmed. ``maxlen`` and ``max_age`` trim on every publish; ``delete_acked``
    deletes each entry once every group has acked it. Trimming ignores the
    pending entries lists: an entry trimmed while a consumer holds it can still
    be acked, but not redelivered; the broker's ``inspect`` counts such entries
    (``trimmed_pending``, ``lost_to_trimming``).
    """

    #: Keep about this many entries (``XADD ... MAXLEN ~ N``; exact with ``trim_exact``).
    maxlen: int | None = None
    #: Drop entries older than this many seconds (``XADD ... MINID ~ now - age``).
    max_age: float | None = None
    #: Trim exactly (``=``) instead of by whole radix-tree nodes (``~``, much cheaper).
    trim_exact: bool = False
    #: Delete an entry as soon as every group of the stream has acked it.
    delete_acked: bool = False
    #: The content type of entries written by other programs (default: guessed).
    raw_content_type: str | None = None
    #: Seconds between lease renewals (default: a third of the visibility timeout).
    heartbeat_interval: float | None = None
    #: The stream of each topic, for a stream another program fills: one ``*``
    #: stands for the topic (``events:*``: topic ``orders`` is ``events:orders``).
    #: Default: ``<prefix>:{<topic>}``.
    stream_key: str | None = None
    #: The entry field that holds the payload: brokerkit writes it (beside its
    #: ``bk1`` header), and an entry with this field alone is that payload, as
    #: written by a program that uses ``data`` or ``payload``.
    body_field: str = "body"
    #: How often, in seconds, a waiting consumer looks for delayed messages that
    #: became due. A consumer wakes exactly when the next message it knows of is
    #: due; this bounds how late one published (or nacked with a delay) elsewhere,
    #: while it waited, comes out.
    delay_poll_interval: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.maxlen is not None and self.maxlen < 1:
            raise InvalidOption(f"maxlen must be 1 or more (or unset), got {self.maxlen!r}")
        if self.max_age is not None and not self.max_age > 0:
            raise InvalidOption(
                f"max_age must be a positive number of seconds, got {self.max_age!r}"
            )
        if self.stream_key is not None:
            check_stream_key(self.stream_key)
        field = self.body_field
        if (
            not isinstance(field, str)
            or _FIELD.fullmatch(field) is None
            or field == HEADER_FIELD.decode()
        ):
            raise InvalidOption(
                "body_field must be 1 to 64 printable characters without spaces, other than "
                f"the header field {HEADER_FIELD.decode()!r} (such as 'data' or 'payload'); "
                f"got {field!r}"
            )
        if not 0 < self.delay_poll_interval <= 60:
            raise InvalidOption(
                "delay_poll_interval must be a number of seconds above 0 and at most 60, "
                f"got {self.delay_poll_interval!r}"
            )
        interval = self.heartbeat_interval
        if interval is not None and not 0 < interval < self.visibility_timeout:
            raise InvalidOption(
                "heartbeat_interval must be a positive number of seconds below the "
                f"visibility_timeout ({self.visibility_timeout}), got {interval!r}"
            )


@dataclass
class StreamState:
    """What one subscription of a stream remembers between fetches."""

    key: str
    lost_key: str
    #: The hash of each group's lease length: the longest visibility timeout (ms)
    #: any member subscribed with. Claims wait that long.
    lease_key: str
    start_id: str
    #: The group's lease length (ms) when this subscription joined (it only grows).
    lease_ms: int = 0
    #: Where the next XAUTOCLAIM scan of the pending entries list resumes.
    cursor: str = "0-0"
    #: When (time.monotonic) the next fetch reclaims idle entries before reading.
    claim_at: float = 0.0
    #: The topic's delayed publishes and the group's delayed retries (.scheduling).
    scheduled_key: str = ""
    delayed_key: str = ""
    #: When (time.monotonic) the next fetch looks for held messages that are due.
    release_at: float = 0.0
    #: Whether a held message is known to be due then (else it is the next poll).
    release_due: bool = False
    #: The group's wake stream (see :data:`.scripts.NACK`): a blocking read waits
    #: on it too, so that an entry handed back or requeued wakes a waiting member.
    wake_key: str = ""
    #: Ids of wake entries read and not yet acked (the next claim acks them).
    woken: list[str] = dataclasses.field(default_factory=list)
    # What lets an ack of one whole read batch skip listing its entries (see
    # :data:`.scripts.ACK`): the batch must be read when this consumer's pending
    # entries list was known to be empty and nothing of this subscription could
    # have added to it since. All four change under ``guard`` (a fetch and an ack may
    # run in two threads).
    guard: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    #: Reads and claims of this subscription under way.
    in_flight: int = 0
    #: Counts what may have added entries to this consumer's pending list: each read,
    #: and each claim that claimed an entry (or failed).
    version: int = 0
    #: The ``version`` at which an ack found this consumer's pending list empty with
    #: no read or claim under way (-1: not known to be empty).
    empty_at: int = -1
    #: The deliveries of the last read, when it was read with the list known to be
    #: empty: acked exactly, in this order, they are one whole batch.
    whole: list[Any] | None = dataclasses.field(default=None, repr=False)

    def fetch_started(self, read: bool) -> int | None:
        """A read (``read``) or claim starts. For a read whose batch may be acked
        as a whole (the pending list was empty, and nothing ran since), the token
        to pass to :meth:`read_whole` with its deliveries; otherwise None."""
        with self.guard:
            eligible = read and self.in_flight == 0 and self.empty_at == self.version
            self.in_flight += 1
            if read:
                self.version += 1
                self.whole = None
            return self.version if eligible else None

    def read_whole(self, token: int, deliveries: list[Any]) -> None:
        """The deliveries of the read that :meth:`fetch_started` gave ``token``: one
        whole batch, unless another read or claim ran since."""
        with self.guard:
            if self.version == token and deliveries:
                self.whole = deliveries

    def take_whole(self, deliveries: list[Any]) -> bool:
        """Whether ``deliveries`` are the last read's whole batch, in its order (it
        can be acked whole once)."""
        with self.guard:
            whole = self.whole is not None and deliveries == self.whole
            if whole:
                self.whole = None
            return whole

    def fetch_ended(self, changed: bool) -> None:
        """A read or claim ended; ``changed``: a claim that claimed (or failed)."""
        with self.guard:
            self.in_flight -= 1
            if changed:
                self.version += 1
                self.whole = None

    def settling(self) -> int | None:
        """An ack starts: the ``version`` to report an empty pending list at, or None
        when a read or claim is under way (an empty list proves nothing then)."""
        with self.guard:
            return self.version if self.in_flight == 0 else None

    def found_empty(self, version: int) -> None:
        """An ack that started at ``version`` (see :meth:`settling`) found the list
        empty: reads from now on may be acked whole, unless one ran meanwhile."""
        with self.guard:
            if self.in_flight == 0 and self.version == version:
                self.empty_at = version

    def forget_empty(self) -> None:
        """Something may have stayed in or come back to the list (a nack, a
        hand-back): no batch is acked whole until an ack finds it empty again."""
        with self.guard:
            self.empty_at = -1
            self.whole = None
