"""The options of ``redis+stream://`` URLs, and what a subscription remembers (no I/O:
used by the sync and the asyncio broker alike)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from brokerkit._option_secrets import quoted_value
from brokerkit.backends.redis._options import RedisOptions
from brokerkit.backends.redis._stream_fields import HEADER_FIELD
from brokerkit.backends.redis.stream.keys import check_stream_key
from brokerkit.exceptions import InvalidOption

__all__ = ["ORIGINAL_ENTRY_FIELD", "PUBLISH_CHUNK", "RedisStreamOptions", "StreamState"]

#: publish_many writes this many messages per script: all or none of each chunk.
PUBLISH_CHUNK = 2000

#: The field of a dead letter that holds the id of the entry it came from.
ORIGINAL_ENTRY_FIELD = "x-original-entry"

_FIELD = re.compile(r"[!-~]{1,64}")


@dataclass(frozen=True)
class RedisStreamOptions(RedisOptions):
    """Options of ``redis+stream://`` and ``rediss+stream://`` URLs.

    Retention: XACK does not delete an entry, so a stream grows until it is
    trimmed. ``maxlen`` and ``max_age`` trim on every publish; ``delete_acked``
    deletes each entry once every group has acked it. Trimming ignores the
    pending entries lists: an entry trimmed while a consumer holds it can still
    be acked until its lease is next renewed (Redis 7+), but not redelivered: a
    renewal, a requeue, a delayed retry or a hand-back of it, or a reclaim after its
    lease ran out, counts it lost. The broker's ``inspect`` counts such entries
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
            raise InvalidOption(
                f"maxlen must be 1 or more (or unset), got {quoted_value('maxlen', self.maxlen)}"
            )
        if self.max_age is not None and not self.max_age > 0:
            raise InvalidOption(
                "max_age must be a positive number of seconds, "
                f"got {quoted_value('max_age', self.max_age)}"
            )
        if self.stream_key is not None:
            check_stream_key(self.stream_key, cluster=self.cluster)
        field = self.body_field
        if (
            not isinstance(field, str)
            or _FIELD.fullmatch(field) is None
            or field == HEADER_FIELD.decode()
        ):
            raise InvalidOption(
                "body_field must be 1 to 64 printable characters without spaces, other than "
                f"the header field {HEADER_FIELD.decode()!r} (such as 'data' or 'payload'); "
                f"got {quoted_value('body_field', field)}"
            )
        if field == ORIGINAL_ENTRY_FIELD:
            raise InvalidOption(
                f"body_field cannot be {ORIGINAL_ENTRY_FIELD!r}: a dead letter keeps the id "
                "of the entry it came from in that field, which would overwrite its payload; "
                "choose another name (such as 'data' or 'payload')"
            )
        if not 0 < self.delay_poll_interval <= 60:
            raise InvalidOption(
                "delay_poll_interval must be a number of seconds above 0 and at most 60, "
                f"got {quoted_value('delay_poll_interval', self.delay_poll_interval)}"
            )
        interval = self.heartbeat_interval
        if interval is not None and not 0 < interval < self.visibility_timeout:
            timeout = quoted_value("visibility_timeout", self.visibility_timeout)
            raise InvalidOption(
                "heartbeat_interval must be a positive number of seconds below the "
                f"visibility_timeout ({timeout}), "
                f"got {quoted_value('heartbeat_interval', interval)}"
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
    #: Where the next fetch script's look for idle entries resumes ("0-0": the
    #: start; any other: more may be waiting, see :data:`.lease_scripts.FETCH`).
    cursor: str = "0-0"
    #: Set when this subscription handed entries back (a cut-off receive's fetch, see
    #: :meth:`~.nacking_async.StreamNacking._hand_back`): the next claim looks from
    #: the start ("0-0"), not from :attr:`cursor`, so that they come out again before
    #: any entry after them (ORDERED), however far the cursor had gone.
    rewind: bool = False
    #: Where the reaper's next page of idle entries starts ("-": the start; see
    #: :data:`.lease_scripts.REAP`).
    reap_cursor: str = "-"
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
    #: The receipts of the last ``XREADGROUP ... >`` read's batch, in its order: an
    #: ack of exactly these entries (the same receipt objects: a list comparison, in C,
    #: where the ids would be gathered one by one) may be sent by its count (see
    #: :data:`.ack_script.ACK`). Each read replaces it; the ack that takes it clears it.
    #: Receipts, not the deliveries: a delivery the application let go of unsettled
    #: must not be kept alive here, or its lease would be renewed for ever (see
    #: :class:`~.._heartbeat_async.LeaseKeeper`).
    #: Read and written without a lock: a race only makes an ack's comparison fail,
    #: which takes the ids' path.
    last_read: list[Any] | None = dataclasses.field(default=None, repr=False)
    #: Whether acks may go by count: not once the script said the group is too big.
    count_acks: bool = True
    #: The subscription's reads, on a connection it holds (see :mod:`.reader_async`).
    reader: Any = dataclasses.field(default=None, repr=False)
