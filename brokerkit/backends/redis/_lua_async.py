"""A Lua script as the Redis backends run it: ``EVALSHA``; after ``NOSCRIPT``, ``SCRIPT
LOAD`` and ``EVALSHA`` again on one server, ``EVAL`` on a cluster.

redis-py's own script object answers ``NOSCRIPT`` with ``SCRIPT LOAD`` on whatever node
its client picks: on a cluster that need not be the node that serves the keys (a newly
promoted master, say), and the retried ``EVALSHA`` fails again. ``EVAL`` goes where the
keys are, runs the script and leaves it cached there for the next ``EVALSHA``; so on a
cluster the ACL user needs ``+eval`` besides ``+evalsha`` (docs/deployments.md). A
``NOSCRIPT`` reply means the script did not run, so nothing is applied twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

__all__ = ["AsyncLua"]


class AsyncLua:
    """One script, bound to a client.

    :ivar script: the script's text.
    :ivar sha: its SHA-1, the name ``EVALSHA`` runs it by.
    """

    def __init__(self, client: aioredis.Redis, script: str) -> None:
        self.client = client
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    async def __call__(
        self,
        keys: Sequence[Any] = (),
        args: Sequence[Any] = (),
        client: aioredis.Redis | None = None,
    ) -> Any:
        """The script's reply for ``keys`` and ``args`` (on ``client``, if given)."""
        target: Any = client if client is not None else self.client  # a cluster client too
        try:
            return await target.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            if isinstance(target, aioredis.RedisCluster):
                return await target.eval(self.script, len(keys), *keys, *args)
            await target.script_load(self.script)
            return await target.evalsha(self.sha, len(keys), *keys, *args)
