"""The calls that look after a redis+list topic as a whole (the scripts of
:mod:`.upkeep`): each first reads which consumers and lease groups there are, so that
the script is given their keys (see :meth:`.TopicPlan.keys_for`)."""

from __future__ import annotations

from typing import Any

from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis.list.plan import TopicPlan, as_text, consumer_of

__all__ = ["RESCUE_LEASES", "RESCUE_LIMIT", "inspect_once", "rescue_once"]

#: A rescue call visits at most this many lease groups and dead consumers.
RESCUE_LIMIT = 1000
#: A rescue call looks at most at this many leases; the rest wait for the next call,
#: which a consumer's maintenance makes right after it. Measured on a private Redis
#: 7.0 handing back 10,000 (one call for all of them took 220 to 310 ms of server
#: time): expired leases 1 to 1.3 ms a call at the median, 2.7 ms at most; a dead
#: consumer's 1.6 to 1.9 ms, 4.5 to 6.6 ms at most (each call lists the names of
#: what is left in its lease hash: HKEYS, as no command the documented ACL grants
#: reads part of a hash).
RESCUE_LEASES = 100


async def rescue_once(client: Any, run: AsyncLua, plan: TopicPlan, own: str) -> list[Any]:
    """One RESCUE call (``run``) on ``client``: first which consumers and batches it
    may visit (the lease groups due first, the heartbeats ending first, and ``own``), so
    that their keys are declared; a dead consumer's batches are read and declared in a
    second call when the first names it. The reply's first six values (see RESCUE)."""
    keys = plan.keys
    pipe: Any
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrange(keys.deadlines, 0, RESCUE_LIMIT - 1)
        pipe.zrange(keys.consumers, 0, RESCUE_LIMIT - 1)
        groups, consumers = await pipe.execute()
    batches = [as_text(g) for g in groups]
    names = [consumer_of(g) for g in batches] + [as_text(c) for c in consumers]
    if own:
        names.append(own)
    args = [*plan.common, RESCUE_LIMIT, own, RESCUE_LEASES]
    reply: list[Any] = await run(keys=plan.keys_for(names, batches), args=args)
    if reply[6]:
        dead = [as_text(c) for c in reply[6]]
        async with client.pipeline(transaction=False) as pipe:
            for consumer in dead:
                pipe.hkeys(keys.fetches(consumer))
            fetched = await pipe.execute()
        for consumer, nonces in zip(dead, fetched, strict=True):
            batches.extend(f"{as_text(n)}0:{consumer}" for n in nonces)
        again: list[Any] = await run(keys=plan.keys_for(names, batches), args=args)
        for index in (0, 2, 4):  # handed back, orphans, held messages released
            again[index] += reply[index]
        reply = again
    return reply[:6]


async def inspect_once(client: Any, run: AsyncLua, plan: TopicPlan) -> Any:
    """The INSPECT script's reply (``run``) on ``client``, every consumer and every
    consumer a lease names declared."""
    pipe: Any
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrange(plan.keys.consumers, 0, -1)
        pipe.hkeys(plan.keys.expiry)
        consumers, receipts = await pipe.execute()
    names = [as_text(c) for c in consumers] + [consumer_of(as_text(r)) for r in receipts]
    return await run(keys=plan.keys_for(names), args=plan.common)
