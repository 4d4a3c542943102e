"""Publishing to a redis+stream topic: ``XADD`` (trimming as it adds), a batch as
scripts run in order, and the hold of delayed messages in the topic's ``scheduled`` set;
waiting for replicas where asked. A mixin of :class:`AsyncRedisStreamBroker`."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerkit._message import Message
from brokerkit.backends.redis._client_async import (
    CONNECT_RETRIES,
    Reconnector,
    is_cluster,
    time_at,
)
from brokerkit.backends.redis._durable_async import AsyncReplicaWait, mark_retry
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis._stream_fields import stream_header
from brokerkit.backends.redis.stream.calls_async import Call, InOrder, StreamScripts
from brokerkit.backends.redis.stream.keys import StreamKeyspace
from brokerkit.backends.redis.stream.landed_async import AddOnce, Clock, Lost
from brokerkit.backends.redis.stream.options import PUBLISH_CHUNK, RedisStreamOptions
from brokerkit.backends.redis.stream.partial import partial_batch
from brokerkit.backends.redis.stream.scheduling import held_members
from brokerkit.exceptions import BrokerError, IncompatibleTopic

__all__ = ["StreamPublishing", "age_ms"]


def age_ms(seconds: float) -> str:
    """A max age in whole milliseconds, for the scripts (capped far past any clock)."""
    return str(int(min(seconds * 1000, 2.0**62)))


class StreamPublishing:
    """The publishing primitives of :class:`AsyncRedisStreamBroker`, and how an
    ``XADD`` trims the stream (the fetch script trims so too as it releases delayed
    publishes)."""

    options: RedisStreamOptions
    #: The client publishes run on: one whose commands redis-py never resends (the
    #: settling client, ``retries=0``); brokerkit's retry looks before it adds again.
    _publish_client: aioredis.Redis
    _scripts: StreamScripts
    _keys: StreamKeyspace
    _reconnector: Reconnector
    #: Set when publishes wait for replicas (the ``replicas`` option).
    _durable: AsyncReplicaWait | None
    #: Single publishes go on a connection kept for them when it is free.
    _sender: AsyncReader

    if TYPE_CHECKING:  # provided by AsyncRedisStreamBroker

        async def _wrong_key(self, topic: str, group: str | None) -> IncompatibleTopic | None: ...

    def _trimming(self) -> tuple[str, str, str]:
        """(maxlen or "", max age in ms or "", "~" or "="): how the scripts trim the
        stream as they add to it. The age counts back from the server's clock, in the
        script: entry ids are the server's milliseconds, and this host's clock may be
        off (a minute ahead, it trimmed every entry just added with ``max_age=60``)."""
        opts = self.options
        how = "=" if opts.trim_exact else "~"
        age = "" if opts.max_age is None else age_ms(opts.max_age)
        maxlen = "" if opts.maxlen is None else str(opts.maxlen)
        return maxlen, age, how

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Add ``messages`` to the topic's stream. Every publish runs on a client that
        never resends a command itself: a retry after a lost connection is
        brokerkit's, which never adds again a message whose ``XADD`` (or a batch's
        script) answered, and when the reply was lost looks for it first (see
        :func:`.landed_async.landed`)."""
        key = self._keys.topic(topic)
        maxlen, age, how = self._trimming()
        if len(messages) != 1:
            calls: list[Call] = []
            lasts: list[str] = []  # each script's last message's header
            for start in range(0, len(messages), PUBLISH_CHUNK):
                flat: list[Any] = [maxlen, age, how, self.options.body_field]
                for message in messages[start : start + PUBLISH_CHUNK]:
                    flat.append(stream_header(message))
                    flat.append(message.payload)
                calls.append((self._scripts.publish, [key], flat))
                lasts.append(flat[-2])

            clock = self._clock(key)

            async def batch_landed(client: Any, index: int, lost: Lost) -> bool:
                return await lost.look(client.execute_command, key, lasts[index], clock)

            run = InOrder(calls, batch_landed)
            await self._run_in_order(topic, key, run, len(messages), held=False)
            return
        # One message, one command: XADD trims by length as it adds; an age needs the
        # server's clock, so a max_age publish sends a trim script after it.
        message = messages[0]
        header = stream_header(message)
        trim = ["MAXLEN", how, maxlen] if maxlen else []
        args: list[Any] = ["XADD", key, *trim, "*", "bk1", header]
        args.append(self.options.body_field)
        args.append(message.payload)
        if age:
            await self._publish_aged(topic, key, args, age, how)
            return
        durable = self._durable
        if durable is not None:
            scheduled = self._keys.topic(topic, "scheduled")
            lost = Lost()
            stored = False

            async def send_on(connection: Any) -> None:
                # once the XADD answered (or was found), a retry (the WAIT's
                # connection lost) only writes what its WAIT covers the XADD by
                nonlocal stored
                if not stored and lost.failed is not None:
                    stored = await lost.look(connection.execute_command, key, header)
                if stored:
                    await mark_retry(connection, scheduled)
                    return
                lost.sent = time.monotonic()
                try:
                    await connection.execute_command(*args)
                except BaseException as exc:
                    lost.fail(exc)
                    raise
                stored = True

            await self._reconnector.call(
                functools.partial(durable.run, key, send_on),
                topic=topic,
                connect_retries=CONNECT_RETRIES,
            )
            return
        add = AddOnce(self._sender.execute, args, key, header, self._clock(key))
        await self._reconnector.call(add, topic=topic, connect_retries=CONNECT_RETRIES)

    def _clock(self, key: str) -> Clock | None:
        """How a look asks the server's ``TIME`` of the stream ``key``'s node: None where
        the sender's commands go to it (one server), on a cluster to the key's node (not
        the cluster client's default node, whose clock may differ)."""
        cluster: Any = self._publish_client
        if not is_cluster(cluster):
            return None
        return functools.partial(time_at, cluster, key)

    async def _publish_aged(
        self, topic: str, key: str, xadd: list[Any], age: str, how: str
    ) -> None:
        """The ``XADD`` of one message, then the trim script (``XTRIM MINID`` from the
        server's ``TIME`` less ``age`` ms), which takes no body: sent together, one round
        trip (the body is not copied into Lua: the publish script's copy cost 4 us of
        server time at 100 B, 1.3 ms at 1 MB). A trim script the server lost (a
        restart, ``SCRIPT FLUSH``) answers ``NOSCRIPT`` and is loaded and run again,
        alone: the message is stored once. Once the ``XADD`` answered, a retry after a
        lost connection only trims. On a cluster the two go one after the other (redis-py's
        cluster pipeline sends again itself a command whose reply was lost: that
        ``XADD`` was stored twice). With ``replicas``, the two go one after the other
        on the connection that then waits (``WAIT``); there too a retry after the
        ``XADD`` answered only trims (and waits)."""
        script = self._scripts.trim_age
        keys, trim_args = [key], [age, how]
        evalsha = ("EVALSHA", script.sha, 1, key, age, how)
        client: Any = self._publish_client
        header = xadd[-3]
        lost = Lost()
        stored = False

        async def trimmed(reply: Any) -> None:
            if isinstance(reply, NoScriptError):  # it did not run: load it, run it
                await script(keys=keys, args=trim_args, client=client)
            elif isinstance(reply, Exception):
                raise reply

        clock = self._clock(key)

        async def send() -> None:
            nonlocal stored
            if not stored and lost.failed is not None:
                stored = await lost.look(self._sender.execute, key, header, clock)
            if stored:
                await script(keys=keys, args=trim_args, client=client)
                return
            lost.sent = time.monotonic()
            replies: list[Any]
            try:
                if self._sender.pooled:
                    on_its_way = await self._sender.send(tuple(xadd), evalsha)
                    try:
                        replies = await on_its_way.replies()
                    except BaseException:
                        # the XADD's reply, read before the trim's was lost, counts
                        read = on_its_way.read
                        stored = bool(read) and not isinstance(read[0], Exception)
                        raise
                elif is_cluster(client):
                    await client.execute_command(*xadd)  # retries=0: sent once
                    stored = True
                    await script(keys=keys, args=trim_args, client=client)
                    return
                else:  # the URL caps the pool: no connection is kept (AsyncPerCommand)
                    pipe: Any
                    async with client.pipeline(transaction=False) as pipe:
                        pipe.execute_command(*xadd)
                        pipe.execute_command(*evalsha)
                        replies = await pipe.execute(raise_on_error=False)
            except BaseException as exc:
                if not stored:
                    lost.fail(exc)
                raise
            added, trim_reply = replies
            if isinstance(added, (RedisConnectionError, RedisTimeoutError)):
                lost.fail(added)  # returned, not raised: it may have been written all the same
            if isinstance(added, Exception):
                raise added
            stored = True
            await trimmed(trim_reply)

        durable = self._durable
        if durable is not None:
            scheduled = self._keys.topic(topic, "scheduled")

            async def send_on(connection: Any) -> None:
                nonlocal stored
                if not stored and lost.failed is not None:
                    stored = await lost.look(connection.execute_command, key, header)
                if stored:  # the trim may remove nothing: the WAIT must cover the XADD
                    await mark_retry(connection, scheduled)
                else:
                    lost.sent = time.monotonic()
                    try:
                        await connection.execute_command(*xadd)
                    except BaseException as exc:
                        lost.fail(exc)
                        raise
                    stored = True
                await script(keys=keys, args=trim_args, client=connection)

            await self._reconnector.call(
                functools.partial(durable.run, key, send_on),
                topic=topic,
                connect_retries=CONNECT_RETRIES,
            )
            return
        await self._reconnector.call(send, topic=topic, connect_retries=CONNECT_RETRIES)

    async def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        """Hold the messages outside the stream, in the topic's ``scheduled`` set, due
        ``delay`` seconds from the server's now (rounded up to the millisecond)."""
        key = self._keys.topic(topic, "scheduled")
        keys = [key, self._keys.topic(topic)]
        members = held_members(messages)
        delay_ms = max(math.ceil(delay * 1000), 1)
        calls: list[Call] = [
            (self._scripts.hold, keys, [delay_ms, *members[start : start + PUBLISH_CHUNK]])
            for start in range(0, len(members), PUBLISH_CHUNK)
        ]
        try:
            # a hold sent again holds the same members (a ZSET's, once each)
            await self._run_in_order(topic, key, InOrder(calls), len(messages), held=True)
        except IncompatibleTopic as exc:  # the scheduled set's key, say: named
            named = await self._wrong_key(topic, None)
            if named is None:
                raise
            raise named from exc

    async def _run_in_order(
        self, topic: str, key: str, run: InOrder, total: int, *, held: bool
    ) -> None:
        """Run the scripts of a batch of ``total`` messages (:data:`PUBLISH_CHUNK` a
        script) one after another, in order (see :class:`InOrder`); held messages wait
        for replicas as published ones do.

        :raises BrokerError: one failed after others had run: the error says how many
            leading messages were stored (or held).
        """
        calls = run.calls
        send: Callable[[], Awaitable[object]]
        durable = self._durable
        if durable is None:
            send = functools.partial(run, self._publish_client)
        else:
            scheduled = self._keys.topic(topic, "scheduled")

            async def run_on(connection: Any) -> None:
                sends = run.sends
                await run(connection)
                if run.sends == sends:
                    # a retry that found every call answered (or run) wrote nothing:
                    # its WAIT, on a new connection, must cover theirs (see mark_retry)
                    await mark_retry(connection, scheduled)

            send = functools.partial(durable.run, key, run_on)
        try:
            await self._reconnector.call(send, topic=topic, connect_retries=CONNECT_RETRIES)
        except BrokerError as exc:
            if run.done in (0, len(calls)):  # none ran, or all did (replicas lagged)
                raise
            stored = min(run.done * PUBLISH_CHUNK, total)
            maybe = min(PUBLISH_CHUNK, total - stored) if run.unsure else 0
            raise partial_batch(exc, topic, stored, total, held, maybe) from exc
