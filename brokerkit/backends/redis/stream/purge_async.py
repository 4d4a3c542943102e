"""``purge`` on redis+stream: one short script call after another, none of which holds
Redis for long however long the stream is or however many entries are held (the
scripts: :data:`.group_scripts.PURGE` and :data:`.group_scripts.PURGE_STEP`)."""

from __future__ import annotations

from brokerkit.backends.redis.stream.calls_async import StreamScripts
from brokerkit.backends.redis.stream.scripts import text

__all__ = [
    "SMALL_ENTRY",
    "STEP_BYTES",
    "STEP_ENTRIES",
    "STEP_HEADS",
    "STEP_UNREAD",
    "WIDEST_NODE",
    "purge_stream",
]

#: The entries one step reads at most.
STEP_ENTRIES = 256
#: The bytes of fields a step copies into the script at most, besides the one entry
#: that crosses it (read one at a time: the next entry's size is unknown until read).
STEP_BYTES = 256 << 10
#: A trimming step's probe frees at most this many entries past the node it aims at
#: without reading them, and the step stops once its probes may have freed that many.
STEP_UNREAD = 16
#: The entries a trimming step reads at most (one a node of small entries).
STEP_HEADS = 128
#: The bytes of fields from which an entry is big: a radix-tree node of its own (past
#: Redis's ``stream-node-max-bytes``, 4 KB by default), removed alone, as read.
SMALL_ENTRY = 4 << 10
#: The most entries a probe's ``XTRIM ... LIMIT`` names (Redis's
#: ``stream-node-max-entries`` is 100 by default): a node of more is deleted as read.
WIDEST_NODE = 128


async def purge_stream(scripts: StreamScripts, key: str, scheduled_key: str) -> int:
    """Drop the delayed publishes of the stream at ``key`` and every entry no group
    holds; return how many were removed (delayed publishes and entries).

    The first call, atomic, drops the delayed publishes, moves every group past the
    stream's last entry (the *cut*: what it holds is delivered to nobody any more) and
    notes that entry's id. Each further call reads entries at or below the cut one at
    a time, at most :data:`STEP_ENTRIES` of them and no more once their fields come to
    :data:`STEP_BYTES` (so at most that, plus one entry, whatever their sizes).

    While nothing held comes before them, a call drops the stream's head a radix-tree
    node at a time, seeing each node by its first entry: a big one
    (:data:`SMALL_ENTRY` or more, a node of its own) is removed alone; a node of small
    ones (a few KB: Redis's ``stream-node-max-bytes``) by an approximate ``XTRIM
    MINID ... LIMIT``, unread, the LIMIT found by probes that free nothing until it
    reaches the node's count; a probe frees at most :data:`STEP_UNREAD` entries past
    that node unread, and the call stops once its probes may have. After that, a call
    asks every group which of the entries it read it holds and deletes the others. So,
    as the purge is no longer one call:

    * an entry published meanwhile is above the cut: never touched, and delivered;
    * a delivery handed out (pending in its group, as a delayed retry is too) is kept
      and can still be acked or nacked; one settled meanwhile may stay behind, if it
      was held when its step passed (a later purge removes it);
    * a group made meanwhile from the start of the stream, or moved back, may read
      entries at or below the cut before their step: those it holds by then are kept,
      the rest are deleted under it;
    * two purges at once each remove what they find, each entry counted once; a stream
      deleted meanwhile ends the purge with what was counted so far;
    * a purge cut short (a lost connection raises) leaves what its steps had not reached:
      purging again finishes it.
    """
    scheduled, cut = await scripts.purge(keys=[key, scheduled_key])
    removed, cut, cursor = int(scheduled), text(cut), "-"
    while cut and cursor:
        step = [
            cursor,
            cut,
            STEP_ENTRIES,
            STEP_BYTES,
            STEP_UNREAD,
            SMALL_ENTRY,
            WIDEST_NODE,
            STEP_HEADS,
        ]
        gone, last = await scripts.purge_step(keys=[key], args=step)
        removed, cursor = removed + int(gone), text(last)
    return removed
