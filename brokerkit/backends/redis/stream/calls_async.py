"""Running the redis+stream scripts: registered on the broker's client, and run in one
round trip per batch."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis.stream import (
    ack_script,
    group_scripts,
    lease_scripts,
    scheduling,
    scripts,
)
from brokerkit.backends.redis.stream.landed_async import Lost

__all__ = ["Call", "InOrder", "StreamScripts", "run_scripts"]

#: ``(script, keys, args)``.
Call = tuple[AsyncLua, list[Any], list[Any]]


class StreamScripts:
    """The scripts, registered on one client (redis-py loads them on first use and
    again after a server restart flushed its script cache)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.publish: AsyncLua = AsyncLua(client, scripts.PUBLISH)
        self.fetch: AsyncLua = AsyncLua(client, lease_scripts.FETCH)
        self.reap: AsyncLua = AsyncLua(client, lease_scripts.REAP)
        self.ack: AsyncLua = AsyncLua(client, ack_script.ACK)
        self.nack: AsyncLua = AsyncLua(client, scripts.NACK)
        self.renew: AsyncLua = AsyncLua(client, lease_scripts.RENEW)
        self.purge: AsyncLua = AsyncLua(client, group_scripts.PURGE)
        self.purge_step: AsyncLua = AsyncLua(client, group_scripts.PURGE_STEP)
        self.count_after: AsyncLua = AsyncLua(client, group_scripts.COUNT_AFTER)
        self.trim_age: AsyncLua = AsyncLua(client, group_scripts.TRIM_AGE)
        self.remove_idle: AsyncLua = AsyncLua(client, group_scripts.REMOVE_IDLE)
        self.join: AsyncLua = AsyncLua(client, group_scripts.JOIN)
        self.hold: AsyncLua = AsyncLua(client, scheduling.HOLD)


async def run_scripts(client: aioredis.Redis, calls: Sequence[Call]) -> list[Any]:
    """Run ``(script, keys, args)`` calls in one round trip (a pipeline of EVALSHA)
    and return their replies in order.

    redis-py's own pipeline support asks SCRIPT EXISTS first, a second round trip
    on every call; here a script the server lost (a restart, SCRIPT FLUSH) answers
    NOSCRIPT, and only the calls that failed so run again, with EVAL. An error
    reply raises as the first :class:`redis.ResponseError`.
    """
    if len(calls) == 1:
        script, keys, args = calls[0]
        return [await script(keys=keys, args=args, client=client)]
    replies: list[Any] = [None] * len(calls)
    pipe: Any
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        results = await pipe.execute(raise_on_error=False)
    for i, result in enumerate(results):
        if isinstance(result, NoScriptError):
            # did not run: loaded and run again (see AsyncLua)
            script, keys, args = calls[i]
            replies[i] = await script(keys=keys, args=args, client=client)
        elif isinstance(result, Exception):
            raise result
        else:
            replies[i] = result
    return replies


class InOrder:
    """``calls`` run one at a time, in order, each only once the one before it
    answered: the first error stops them, and :attr:`done` says how many answered.
    Called again (the reconnector's retry after a lost connection), it goes on from
    the first call that has not answered; when that call may have been written and its
    reply lost, ``landed(client, index, lost)`` (if given) says whether it ran (see
    :meth:`.landed_async.Lost.look`), and one that did is not sent again. A call that
    failed before anything of it was written (the pool's cap: see
    :func:`.landed_async.unwritten`) is known not to have run: no look.

    :ivar done: how many of the calls answered (or were found to have run), from the
        first.
    :ivar sends: how many times a call was sent, over all runs.
    """

    def __init__(
        self,
        calls: Sequence[Call],
        landed: Callable[[aioredis.Redis, int, Lost], Awaitable[bool]] | None = None,
    ) -> None:
        self.calls = calls
        self.done = 0
        self.sends = 0
        self._lost = Lost()  # the call sent last
        self._landed = landed

    @property
    def unsure(self) -> bool:
        """Whether the call after the :attr:`done` ones may have run (its reply lost)."""
        return self._lost.failed is not None

    async def __call__(self, client: aioredis.Redis) -> None:
        lost = self._lost
        while self.done < len(self.calls):
            landed = self._landed
            if lost.failed is not None and landed and await landed(client, self.done, lost):
                self.done += 1
                continue
            lost.sent = time.monotonic()
            self.sends += 1
            script, keys, args = self.calls[self.done]
            try:
                await script(keys=keys, args=args, client=client)
            except BaseException as exc:
                lost.fail(exc)
                raise
            lost.failed = None
            self.done += 1
