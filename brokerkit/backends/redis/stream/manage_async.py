"""Operations on a stream beyond the broker primitives: reading it as a log,
managing groups, deleting and trimming entries, removing idle consumers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from brokerkit._topics import check_group, check_topic
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import translate_errors
from brokerkit.backends.redis.stream.calls_async import StreamScripts
from brokerkit.backends.redis.stream.entries import decode_entry
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.log import (
    LogEntry,
    check_count,
    check_position,
    check_seconds,
    group_start,
)
from brokerkit.backends.redis.stream.publish_async import age_ms
from brokerkit.backends.redis.stream.scripts import shown, text
from brokerkit.exceptions import BrokerClosed, IncompatibleTopic, InvalidOption

__all__ = ["StreamManagement", "create_group", "last_id", "read_log"]


class StreamManagement:
    """The public management methods of :class:`AsyncRedisStreamBroker`."""

    url: BrokerURL
    options: Any
    _client: aioredis.Redis
    _scripts: StreamScripts
    _keys: StreamKeyspace

    if TYPE_CHECKING:  # provided by AsyncRedisStreamBroker and AsyncBroker

        def stream_key(self, topic: str) -> str: ...

        def _check_open(self) -> None: ...

        async def _wrong_key(self, topic: str, group: str | None) -> IncompatibleTopic | None: ...

        @property
        def closed(self) -> bool: ...

    async def read(
        self,
        topic: str,
        *,
        after: str = "earliest",
        count: int = 100,
        timeout: float | None = None,
    ) -> list[LogEntry]:
        """Read ``topic`` as a log (``XREAD``), outside any group: nothing is leased
        or acked, and no group's position moves.

        :param after: ``"earliest"`` (from the first entry kept), ``"latest"``
            (only entries added from now on, so give a ``timeout``), or the
            :attr:`LogEntry.position` of the last entry read: entries after it.
        :param count: at most this many entries.
        :param timeout: wait up to this many seconds for the first entry
            (``None``: return at once).
        """
        self._check_open()
        key = self.stream_key(topic)
        return await read_log(
            self._client,
            self.url,
            key,
            topic,
            after,
            count,
            timeout,
            self.options.raw_content_type,
            self.options.body_field.encode(),
        )

    async def tail(
        self, topic: str, *, after: str = "earliest", timeout: float | None = None, batch: int = 100
    ) -> AsyncIterator[LogEntry]:
        """Entries of ``topic`` as a log, in order, waiting for new ones; stops when
        none arrives for ``timeout`` seconds (``None``: never) or the broker closes.

        ``after`` as in :meth:`read`; ``"latest"`` means the end of the stream at
        the moment ``tail`` is called, so nothing published after the call is missed.
        It returns an async iterator: ``async for entry in await broker.tail(topic)``.
        """
        self._check_open()
        key = self.stream_key(topic)
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
        batch = check_count(batch, "batch", 1)
        position = after
        if after == "latest":
            with translate_errors(self.url, topic):
                position = await last_id(self._client, key)
        elif after != "earliest":
            check_position(after, "after")
        return self._follow(topic, position, timeout, batch)

    async def _follow(
        self, topic: str, position: str, timeout: float | None, batch: int
    ) -> AsyncIterator[LogEntry]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            try:
                entries = await self.read(topic, after=position, count=batch, timeout=wait or None)
            except BrokerClosed:
                return
            for entry in entries:
                yield entry
                position = entry.position
            if entries and deadline is not None:
                deadline = time.monotonic() + (timeout or 0.0)
            elif not entries and deadline is not None and time.monotonic() >= deadline:
                return

    async def create_group(self, topic: str, group: str, *, start: str = "earliest") -> bool:
        """Create ``group`` on ``topic`` (and the stream) unless it exists, starting
        at ``earliest``, ``latest`` or after an entry id; return whether it was new."""
        with translate_errors(self.url, topic):
            return await create_group(
                self._client, self.stream_key(topic), check_group(group), group_start(start)
            )

    async def set_group_position(self, topic: str, group: str, position: str) -> None:
        """Move ``group`` so it next reads after ``position`` (``earliest``,
        ``latest`` or an entry id): replay, or skip ahead. Pending entries stay.

        :raises InvalidOption: ``position`` is none of those, or ``topic`` has no group
            ``group`` (:meth:`create_group` makes one, at a position)."""
        key, start = self.stream_key(topic), group_start(position, "position")
        with translate_errors(self.url, topic):
            try:
                await self._client.xgroup_setid(key, group, start)
            except ResponseError as exc:
                # NOGROUP, or (no stream at all) "requires the key to exist"
                if not str(exc).startswith("NOGROUP") and "requires the key" not in str(exc):
                    raise
                raise InvalidOption(
                    f"the topic {topic!r} at {self.url} has no group {group!r} to move; "
                    f"create_group({topic!r}, {group!r}, start=...) makes one"
                ) from None

    async def delete_group(self, topic: str, group: str) -> bool:
        """Delete ``group``, its pending entries list and what the backend keeps for it
        (its delayed retries, wake stream, lease length and lost count), so that a
        group made again under its name starts afresh; return whether it existed."""
        topic = check_topic(topic)
        key = self._keys.topic
        with translate_errors(self.url, topic):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xgroup_destroy(self.stream_key(topic), group)
                pipe.delete(key(topic, "wake", group), key(topic, "delayed", group))
                pipe.hdel(key(topic, "vt"), group)
                pipe.hdel(key(topic, "lost"), group)
                existed, *cleared = await pipe.execute(raise_on_error=False)
            if isinstance(existed, ResponseError):
                if "requires the key to exist" not in str(existed):
                    raise existed
                existed = False  # no stream, so no group
            for reply in cleared:  # what the backend keeps for the group, in keys of its own
                if isinstance(reply, ResponseError) and str(reply).startswith("WRONGTYPE"):
                    named = await self._wrong_key(topic, group)
                    if named is not None:
                        raise named from reply
                if isinstance(reply, ResponseError):
                    raise reply
            return bool(existed)

    async def delete_entries(self, topic: str, *positions: str) -> int:
        """Delete entries by id (``XDEL``); return how many existed. A group that
        holds one of them can still ack it, but can no longer redeliver it."""
        ids = [check_position(p, "an entry id", words=False) for p in positions]
        if not ids:
            return 0
        with translate_errors(self.url, topic):
            return int(await self._client.xdel(self.stream_key(topic), *ids))

    async def trim(
        self,
        topic: str,
        *,
        maxlen: int | None = None,
        max_age: float | None = None,
        exact: bool = False,
    ) -> int:
        """Trim ``topic`` now to about ``maxlen`` entries, or drop entries older
        than ``max_age`` seconds; return how many were removed. Approximate (whole
        radix-tree nodes, cheap) unless ``exact``."""
        if (maxlen is None) == (max_age is None):
            raise InvalidOption("trim needs exactly one of maxlen or max_age")
        if max_age is not None:
            # counted back from the server's clock, which gave the entries their ids
            age = age_ms(check_seconds(max_age, "max_age"))
            with translate_errors(self.url, topic):
                how = "=" if exact else "~"
                keys = [self.stream_key(topic)]
                return int(await self._scripts.trim_age(keys=keys, args=[age, how]))
        maxlen = check_count(maxlen, "maxlen", 0)
        with translate_errors(self.url, topic):
            return int(
                await self._client.xtrim(
                    self.stream_key(topic), maxlen=maxlen, approximate=not exact
                )
            )

    async def remove_idle_consumers(self, topic: str, group: str, idle: float) -> list[str]:
        """Remove the consumers of ``group`` idle for ``idle`` seconds or more that
        hold no entries; return their names. Consumers holding entries stay until
        those are acked or reclaimed, since removing them would lose the entries."""
        idle_ms = int(check_seconds(idle, "idle") * 1000)
        with translate_errors(self.url, topic):
            wake = self._keys.topic(check_topic(topic), "wake", group)
            names = await self._scripts.remove_idle(
                keys=[self.stream_key(topic), wake], args=[group, idle_ms, ""]
            )
        return [shown(n) for n in names]


async def create_group(client: aioredis.Redis, key: str, group: str, start: str) -> bool:
    """Create ``group`` at ``start`` (and the stream, if missing); return False if
    it existed already, which is fine: its position is kept."""
    try:
        await client.xgroup_create(key, group, id=start, mkstream=True)
    except ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        raise
    return True


async def last_id(client: Any, key: str) -> str:
    """The id of the newest entry of ``key``, or ``0-0`` when there is none."""
    newest = await client.xrevrange(key, "+", "-", count=1)
    return text(newest[0][0]) if newest else "0-0"


async def read_log(
    client: Any,
    url: BrokerURL,
    key: str,
    topic: str,
    after: str,
    count: int,
    timeout: float | None,
    raw_content_type: str | None,
    body_field: bytes,
) -> list[LogEntry]:
    """Up to ``count`` entries after ``after`` (see ``AsyncRedisStreamBroker.read``)."""
    if after == "earliest":
        position = "0-0"
    elif after == "latest":
        position = "$"
    else:
        position = check_position(after, "after")
    count = check_count(count, "count", 1)
    if timeout is not None:
        timeout = check_seconds(timeout, "timeout")
    # at most 2**53 ms (285,000 years): Redis takes no BLOCK past a signed 64-bit number
    block = None if not timeout else max(1, int(min(timeout * 1000, 2.0**53)))
    with translate_errors(url, topic):
        reply = await client.xread({key: position}, count=count, block=block)
    return [
        LogEntry(text(entry_id), decode_entry(topic, dict(fields), raw_content_type, body_field))
        for entry_id, fields in _entries(reply)
    ]


def _entries(reply: Any) -> list[Any]:
    """The entries of a one-stream ``XREAD`` reply, in any shape redis-py gives it:
    ``[[key, entries]]`` (RESP2), ``{key: [entries]}`` (RESP3: redis-py wraps the
    entries in a list), ``{key: entries}`` (``legacy_responses=False``); empty when
    nothing came."""
    if not reply:
        return []
    got: list[Any] = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    if got and isinstance(got[0], list):  # RESP3's extra list; an entry is a tuple
        got = got[0]
    return got
