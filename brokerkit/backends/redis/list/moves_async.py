"""A redis+list fetch by moves (see FETCH, *Moves*, in :mod:`.scripts`): for elements
of ``MOVE_BYTES`` or more, one transaction of ``MULTI``, the FETCH script, one
``LMOVE`` an element into the batch, ``RENAMENX`` of the queue back, ``EXEC``, whose
``LMOVE`` replies are the elements.

The promises: what the script leases is what the moves move (nothing else runs in a
transaction), and what the queue held is never lost under the consumer's ``moving:``
name. A server that refuses the transaction before it runs any of it for want of a
permission (an ACL without ``RENAMENX``, the one rename the script and the transaction
make, or without ``EXEC``) gets this consumer's fetches by the script alone from then
on. So does one that refuses ``MULTI``: it runs each command on its own, which the
script's lease and the ``RENAMENX`` keep whole (a queue another client pushed to
meanwhile is not overwritten; what the ``RENAMENX`` could not give back, the
consumer's next fetch gives back to the queue's head, or a rescue once the consumer is
gone: see ``give_back_lent`` in the preamble). Any other refusal (out of memory, a
read-only replica, a server loading) is raised, for the consumer's retries.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.exceptions import (
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    ResponseError,
)

from brokerkit._logging import subscription_fields
from brokerkit.backends.redis._lua_async import AsyncLua
from brokerkit.backends.redis.list.plan import MOVE_BYTES, moves_for, new_nonces

if TYPE_CHECKING:
    from brokerkit._subscription_async import AsyncSubscription
    from brokerkit.backends.redis.list.consumer_async import ConsumerState

__all__ = ["MovesReply", "lease_moved", "moves_reply", "moves_transaction"]

log = logging.getLogger("brokerkit.redis")


class MovesReply(NamedTuple):
    """What a transaction of moves answered."""

    #: the FETCH script's reply, an error reply as its exception; None: nothing ran
    reply: Any
    #: the elements the moves moved, in order
    moved: list[bytes]


def moves_transaction(
    fetch: AsyncLua,
    keys: list[str],
    args: list[Any],
    moves: int,
    batch: str,
    moving: str,
    queue: str,
) -> list[tuple[Any, ...]]:
    """``MULTI``, the ``fetch`` script with ``keys`` (the ``batch`` and the ``moving``
    key among them) and ``args``, then ``moves`` times ``LMOVE``, ``RENAMENX`` back to
    ``queue``, ``EXEC``."""
    return [
        ("MULTI",),
        ("EVALSHA", fetch.sha, len(keys), *keys, *args),
        *[("LMOVE", moving, batch, "RIGHT", "RIGHT")] * moves,
        ("RENAMENX", moving, queue),
        ("EXEC",),
    ]


def moves_reply(subscription: AsyncSubscription, replies: list[Any]) -> MovesReply:
    """Read the replies to the subscription's transaction of moves; where the server
    refused it for good (a refused ``MULTI``; a queued command, or ``EXEC``, it had no
    permission for), the consumer fetches by the script alone from now on (logged)."""
    multi, done = replies[0], replies[-1]
    if isinstance(multi, ResponseError):  # each command ran on its own; EXEC failed
        _refuse(subscription, multi)
        # (a RENAMENX that found a queue pushed meanwhile, 0, left the rest under the
        # moving key: the consumer's next fetch, or a rescue, gives it back)
        script, *moved, _ = replies[1:-1]
        return _read(script, moved)
    if isinstance(done, ExecAbortError):  # nothing ran
        refused = next((r for r in replies[1:-1] if isinstance(r, ResponseError)), done)
        # a queued command, or EXEC itself ("... because of: NOPERM ..."), not permitted
        if isinstance(refused, NoPermissionError) or "NOPERM" in str(refused):
            _refuse(subscription, refused)
            return MovesReply(None, [])
        return MovesReply(refused, [])  # raised: retried if transient
    if isinstance(done, Exception):
        return MovesReply(done, [])
    return _read(done[0], done[1:-1])


def _read(script: Any, moved: list[Any]) -> MovesReply:
    elements = [element for element in moved if element is not None]
    failed = next((e for e in elements if isinstance(e, Exception)), None)
    if failed is not None and not isinstance(script, Exception):
        script = failed
    return MovesReply(script, elements)


def _refuse(subscription: AsyncSubscription, refused: ResponseError) -> None:
    subscription.state.moves_refused = True
    log.info(
        "the server refused a fetch by moves (%s); this consumer leases by the script alone",
        refused,
        extra=subscription_fields(subscription),
    )


async def lease_moved(
    subscription: AsyncSubscription, count: int, lease_ms: int, fetch: AsyncLua
) -> tuple[list[str], tuple[list[Any], list[list[bytes]] | None]] | None:
    """Lease up to ``count`` elements by moves when the consumer's last fetch was of
    elements of ``MOVE_BYTES`` or more: the fetch's nonces, the script's reply and the
    elements it leased (None: leased, but not by the moves: read the batch); None when
    the fetch should lease by the script alone (smaller elements, a cluster, a server
    that refused the moves). One send, on the consumer's reader."""
    state: ConsumerState = subscription.state
    consumer, size, reader = subscription.consumer, state.element_size, state.reader
    if size < MOVE_BYTES or not reader.pooled or state.moves_refused:
        return None
    nonces = new_nonces(1)
    moves = moves_for(count, size)
    batch, moving = state.keys.batch(nonces[0], consumer), state.keys.moving(consumer)
    keys = [*state.fetch_keys, batch]  # the moving key among the consumer's
    head = state.plan.fetch_args(consumer, count, lease_ms, nonces[0], size)
    commands = moves_transaction(
        fetch, keys, [*head, "3", moves], moves, batch, moving, state.keys.queue
    )
    for _ in range(2):
        answer = moves_reply(
            subscription, await reader.execute_many(*commands, packed=reader.pack(*commands))
        )
        reply = answer.reply
        if isinstance(reply, NoScriptError) and answer.moved:
            # The script did not run, and so did not give back a moving key left
            # behind, from which the moves took: they go back where they were, for the
            # next call's script to give back whole, in order.
            await reader.execute("RPUSH", moving, *reversed(answer.moved))
            await reader.execute("DEL", batch)
        if reply is None or (isinstance(reply, NoScriptError) and state.moves_refused):
            return None  # nothing ran: the script alone
        if not isinstance(reply, NoScriptError):
            break
        # not loaded on this server yet (nothing ran): loaded, then the whole again
        await reader.execute("SCRIPT", "LOAD", fetch.script)
    if isinstance(reply, Exception):
        raise reply
    if reply[0] != len(answer.moved):  # one that came back, leased alone by the script
        return nonces, (reply, None)
    return nonces, (reply, [answer.moved])
