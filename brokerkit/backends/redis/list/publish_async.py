"""Publishing to a redis+list topic: ``LPUSH`` to its queue (in one transaction with
the trim script of a bounded queue, :data:`~brokerkit.backends.redis.list.scripts.TRIM`,
and waiting for replicas where asked), and the hold of delayed messages in its
``scheduled`` set. A mixin of :class:`AsyncRedisListBroker`."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from brokerkit._message import Message
from brokerkit.backends.redis import _envelope
from brokerkit.backends.redis._durable_async import AsyncReplicaWait, mark_retry
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis.list import schedule
from brokerkit.backends.redis.list.calls_async import AsyncListCalls
from brokerkit.backends.redis.list.options import RedisListOptions
from brokerkit.backends.redis.list.plan import TopicPlan
from brokerkit.backends.redis.list.settle_async import run_on
from brokerkit.exceptions import InvalidMessage

__all__ = ["ListPublishing"]

#: LPUSH at most this many values per command (one pipeline still, one round trip).
_PUSH_CHUNK = 1000


class ListPublishing:
    """The publishing primitives of :class:`AsyncRedisListBroker`."""

    options: RedisListOptions
    _client: aioredis.Redis
    _scripts: dict[str, AsyncLua]
    _call: AsyncListCalls
    #: Set when publishes wait for replicas (the ``replicas`` option).
    _durable: AsyncReplicaWait | None
    #: Single publishes go on a connection kept for them when it is free.
    _sender: AsyncReader
    _topic: Callable[[str], TopicPlan]
    _script: Callable[..., Awaitable[Any]]

    def _elements(self, messages: Sequence[Message]) -> list[bytes]:
        """What the queue holds for ``messages``: with ``raw``, their payloads as they
        are (which carry no headers: a message with some is refused), else each one in
        its envelope."""
        if self.options.raw:
            if any(m.headers for m in messages):
                raise InvalidMessage(
                    "raw=true publishes plain payloads, which cannot carry headers; "
                    "publish without headers or turn raw off"
                )
            return [m.payload for m in messages]
        encode = _envelope.encode
        return [encode(m) for m in messages]

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        options = self.options
        values = self._elements(messages)
        plan = self._topic(topic)
        queue = plan.keys.queue
        maxlen = options.maxlen
        durable = self._durable
        if len(values) <= _PUSH_CHUNK and maxlen is None and durable is None:
            send = self._sender.execute
            await self._call(lambda: send("LPUSH", queue, *values), topic)
            return

        trim = self._scripts["TRIM"]
        trim_keys, trim_args = [queue, plan.keys.returned], [maxlen]
        # Set once the server confirmed the push: a retry (a connection lost in the
        # trim that follows a NOSCRIPT, or in the WAIT) then only trims and waits.
        pushed = False

        async def push_on(client: Any) -> None:
            nonlocal pushed
            if pushed:
                if maxlen is not None:
                    await trim(trim_keys, trim_args, client=client)
            else:
                await push(client)
                pushed = True
            if durable is not None:
                # the transaction ran on a connection of the pool, and a retry wrote
                # nothing yet: the WAIT on `client` must cover the push (see mark_retry)
                await mark_retry(client, plan.keys.scheduled)

        async def push(client: Any) -> None:
            nonlocal pushed
            # as a context manager: a cluster's transaction hands its connection back
            async with client.pipeline(transaction=True) as pipe:
                for start in range(0, len(values), _PUSH_CHUNK):
                    pipe.lpush(queue, *values[start : start + _PUSH_CHUNK])
                if maxlen is not None:
                    # the oldest are at the right, where those counted in `returned`
                    # wait: the script trims and lowers the count (see scripts.TRIM)
                    pipe.evalsha(trim.sha, len(trim_keys), *trim_keys, *trim_args)
                try:
                    await pipe.execute()
                except NoScriptError:
                    # the server had lost the script: the messages are pushed (an
                    # error of the LPUSHes would have come first), the trim follows
                    pushed = True
                    await trim(trim_keys, trim_args, client=client)

        if durable is None:
            await self._call(lambda: push_on(self._client), topic)
        else:
            await self._call(lambda: durable.run(queue, push_on), topic)

    async def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        """Hold the messages in the topic's ``scheduled`` set, due ``delay`` seconds
        from the server's now (rounded up to the millisecond: never early)."""
        elements = self._elements(messages)
        members = schedule.hold_members([m.id for m in messages], elements)
        plan = self._topic(topic)
        delay_ms = max(math.ceil(delay * 1000), 1)
        # One script for the whole batch: all of it is held or none (see schedule.HOLD)
        if self._durable is None:
            await self._call(lambda: self._script("HOLD", plan, delay_ms, *members), topic)
        else:  # held messages wait for replicas as published ones do
            args = [*plan.common, delay_ms, *members]
            on = functools.partial(run_on, self._scripts["HOLD"], plan.script_keys, args)
            run = functools.partial(self._durable.run, plan.keys.queue, on)
            await self._call(run, topic)
