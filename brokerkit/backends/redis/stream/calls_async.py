"""Running the redis+stream scripts: registered on the broker's client, and run in one
round trip per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from brokerkit.backends.redis.stream import scheduling, scripts

__all__ = ["StreamScripts", "run_scripts"]


class StreamScripts:
    """The scripts, registered on one client (redis-py loads them on first use and
    again after a server restart flushed its script cache)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.publish: AsyncScript = client.register_script(scripts.PUBLISH)
        self.fetch: AsyncScript = client.register_script(scripts.FETCH)
        self.reap: AsyncScript = client.register_script(scripts.REAP)
        self.ack: AsyncScript = client.register_script(scripts.ACK)
        self.nack: AsyncScript = client.register_script(scripts.NACK)
        self.renew: AsyncScript = client.register_script(scripts.RENEW)
        self.purge: AsyncScript = client.register_script(scripts.PURGE)
        self.count_after: AsyncScript = client.register_script(scripts.COUNT_AFTER)
        self.remove_idle: AsyncScript = client.register_script(scripts.REMOVE_IDLE)
        self.join: AsyncScript = client.register_script(scripts.JOIN)
        self.hold: AsyncScript = client.register_script(scheduling.HOLD)


async def run_scripts(
    client: aioredis.Redis, calls: Sequence[tuple[AsyncScript, list[Any], list[Any]]]
) -> list[Any]:
    """Run ``(script, keys, args)`` calls in one round trip (a pipeline of EVALSHA)
    and return their replies in order.

    redis-py's own pipeline support asks SCRIPT EXISTS first, a second round trip
    on every call; here a script the server lost (a restart, SCRIPT FLUSH) answers
    NOSCRIPT, is loaded, and only the calls that failed so run again. An error
    reply raises as the first :class:`redis.ResponseError`.
    """
    if len(calls) == 1:
        script, keys, args = calls[0]
        return [await script(keys=keys, args=args, client=client)]
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):
        pipe: Any = client.pipeline(transaction=False)
        for i in todo:
            script, keys, args = calls[i]
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results = await pipe.execute(raise_on_error=False)
        missing = []
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, NoScriptError):
                missing.append(i)
            elif isinstance(result, Exception):
                raise result
            else:
                replies[i] = result
        if not missing:
            return replies
        for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
            await client.script_load(script.script)
        todo = missing
    raise NoScriptError("the server dropped the brokerkit scripts twice in a row")
