"""``purge`` on redis+stream: one short script call after another, none of which holds
Redis for long however long the stream is or however many entries are held (the
scripts: :data:`.group_scripts.PURGE` and :data:`.group_scripts.PURGE_STEP`)."""

from __future__ import annotations

import logging
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from brokerkit._logging import log_fields
from brokerkit.backends.redis.stream.calls_async import StreamScripts
from brokerkit.backends.redis.stream.scripts import text

__all__ = [
    "NODE_BYTES",
    "NODE_CHECKED",
    "SMALL_ENTRY",
    "STEP_BYTES",
    "STEP_ENTRIES",
    "STEP_HEADS",
    "STEP_UNREAD",
    "WIDEST_NODE",
    "node_trimming",
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
#: The largest ``stream-node-max-bytes`` under which nodes are trimmed unread: Redis's
#: default. A node whose first entry is small then holds less than that in all, small
#: entries only (0 means 1 GB: a node of small entries could end in big ones).
NODE_BYTES = 4 << 10
#: The first Redis that starts a new node for an entry that would take its node past
#: ``stream-node-max-bytes`` (CVE-2021-32627); before, only the node's size so far was
#: checked, so a big entry could end a node of small ones.
NODE_CHECKED = (6, 2, 6)

log = logging.getLogger("brokerkit.redis")

#: The clients whose purges were told to read every entry (logged once a client).
_READ_ALL_LOGGED: weakref.WeakSet[Any] = weakref.WeakSet()


async def purge_stream(
    scripts: StreamScripts, key: str, scheduled_key: str, *, topic: str | None = None
) -> int:
    """Drop the delayed publishes of the stream at ``key`` and every entry no group
    holds; return how many were removed (delayed publishes and entries). ``topic``
    names the log line of :func:`node_trimming`.

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

    Nodes go unread only where :func:`node_trimming` allows it; elsewhere every entry is
    read, :data:`STEP_ENTRIES` a call."""
    scheduled, cut = await scripts.purge(keys=[key, scheduled_key])
    removed, cut, cursor = int(scheduled), text(cut), "-"
    if not cut:
        return removed
    small, widest = await node_trimming(scripts.purge.client, key, topic=topic)
    heads = STEP_HEADS if small else STEP_ENTRIES
    while cut and cursor:
        step = [cursor, cut, STEP_ENTRIES, STEP_BYTES, STEP_UNREAD, small, widest, heads]
        gone, last = await scripts.purge_step(keys=[key], args=step)
        removed, cursor = removed + int(gone), text(last)
    return removed


async def node_trimming(
    client: aioredis.Redis, key: str, *, topic: str | None = None
) -> tuple[int, int]:
    """``(small, widest)`` for this purge's steps: :data:`SMALL_ENTRY` and the most
    entries a probe names (:data:`WIDEST_NODE`, or ``stream-node-max-entries`` if
    fewer) where nodes of small entries may go unread; ``(0, 0)`` (every entry read)
    unless the server that holds ``key`` says (``CONFIG GET``, ``HELLO``: a script
    cannot ask) it is Redis or Valkey from :data:`NODE_CHECKED` on with a
    ``stream-node-max-bytes`` from 1 to :data:`NODE_BYTES`. A refused ``CONFIG`` (an
    ACL without ``+config|get``, a managed server that renames it) reads every entry
    too. The first time a client's purge reads every entry, why is logged (INFO,
    ``brokerkit.redis``, ``topic`` in its fields: the server's error, or the setting's
    value or version).

    The settings asked are the server's now: the bound holds for nodes written under
    them. A stream whose nodes were written under others may have a call free up to
    ``widest`` entries unread for each head it reads, whatever their sizes
    (docs/backends/redis-stream.md, *Retention and bounded memory*)."""
    found = await _node_settings(client, key)
    if isinstance(found, tuple):
        return found
    if client not in _READ_ALL_LOGGED:
        _READ_ALL_LOGGED.add(client)
        log.info(
            "purge reads every entry of a stream (%s), up to about 17 times the "
            "server's time of freeing nodes of small entries unread: %s. Nodes go unread "
            "only where CONFIG GET and HELLO find Redis or Valkey 6.2.6 or later with "
            "stream-node-max-bytes 1 to %d (docs/backends/redis-stream.md)",
            key,
            found,
            NODE_BYTES,
            extra=log_fields(topic),
        )
    return 0, 0


async def _node_settings(client: aioredis.Redis, key: str) -> tuple[int, int] | str:
    """:func:`node_trimming`'s answer, or why every entry is read."""
    target: Any = client  # or a cluster client
    cluster = isinstance(target, aioredis.RedisCluster)
    if cluster:  # on the node that holds the stream (a pipeline refuses CONFIG)
        node = target.get_node_from_key(key)
        try:
            config = await target.config_get("stream-node-max-*", target_nodes=node)
            hello = await target.execute_command("HELLO", target_nodes=node)
        except ResponseError as refused:
            return f"the server refused CONFIG GET or HELLO: {refused}"
    else:
        async with target.pipeline(transaction=False) as pipe:
            pipe.config_get("stream-node-max-*")
            pipe.execute_command("HELLO")
            config, hello = await pipe.execute(raise_on_error=False)
        for name, reply in (("CONFIG GET", config), ("HELLO", hello)):
            if isinstance(reply, Exception):
                return f"the server refused {name}: {reply}"
    settings, server = _pairs(config), _pairs(hello)
    try:
        most_bytes = int(settings["stream-node-max-bytes"])
        most_entries = int(settings["stream-node-max-entries"])
        version = tuple(int(part) for part in server["version"].split(".")[:3])
    except (KeyError, ValueError) as unread:
        return f"the node settings or server version were not readable ({unread!r})"
    kind = server.get("server")
    if kind not in ("redis", "valkey") or version < NODE_CHECKED:
        return f"the server is {kind!r} {server['version']}"
    if not 0 < most_bytes <= NODE_BYTES:
        return f"stream-node-max-bytes {most_bytes}"
    widest = min(WIDEST_NODE, most_entries) if most_entries > 0 else WIDEST_NODE
    return SMALL_ENTRY, widest


def _pairs(reply: Any) -> dict[str, str]:
    """A reply of names and values (a dict, or a flat list in RESP2) as text."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=False)
    return {
        text(name): value.decode() if isinstance(value, bytes) else str(value)
        for name, value in items
    }
