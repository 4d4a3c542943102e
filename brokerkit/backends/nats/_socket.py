"""What brokerkit does to a nats-py client beneath its API: take back buffered
publishes, end its reconnecting task, drop its socket, drain a subscription. Each
reads nats-py's private attributes (``_pending``, ``_transport``,
``_reconnection_task``, ``_send_unsubscribe``) and does nothing (or what nats-py's API
does) where they are not there."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from brokerkit._acompat import within
from brokerkit.backends.nats._flush import flush

__all__ = ["CLOSE_WAIT", "abort", "drain", "drop_socket", "end_reconnecting", "withdraw"]

#: Seconds close waits for the server to confirm it has what was sent (a PING's PONG),
#: and then for the connection to close; and what it hands back, at most (and here,
#: for nats-py's reconnecting task to end).
CLOSE_WAIT = 2.0


def withdraw(nc: Client, replies: Sequence[str]) -> None:
    """Take back from nats-py's outgoing buffer the publishes made with these reply
    subjects that it has not written out yet: a connection lost as they were
    published leaves them there, to be sent on the reconnection, however late."""
    pending: list[bytes] | None = getattr(nc, "_pending", None)
    if not replies or not pending:
        return
    wanted = {reply.encode() for reply in replies}
    kept = [command for command in pending if _reply_of(command) not in wanted]
    if len(kept) != len(pending):
        nc._pending = kept
        nc._pending_data_size = sum(len(command) for command in kept)


def _reply_of(command: bytes) -> bytes | None:
    """The reply subject of a ``PUB``/``HPUB`` command nats-py buffered, if any."""
    head = bytes(command[: command.find(b"\r\n")]).split()
    if head[:1] == [b"PUB"] and len(head) == 4:
        return head[2]
    if head[:1] == [b"HPUB"] and len(head) == 5:
        return head[2]
    return None


async def end_reconnecting(nc: Client) -> None:
    """End nats-py's reconnecting task for good. It can miss the cancel its close
    sends it (one that comes as a connection attempt fails), and then goes on
    reconnecting a closed client for ever: cancelled again until it ends (for
    :data:`CLOSE_WAIT` seconds at most)."""
    task = getattr(nc, "_reconnection_task", None)
    if not isinstance(task, asyncio.Task):
        return
    deadline = time.monotonic() + CLOSE_WAIT
    while not task.done() and time.monotonic() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)


def drop_socket(nc: Client) -> None:
    """Close the socket of ``nc``, whose event loop has ended (its transport cannot be
    closed through that loop any more)."""
    writer = getattr(nc, "_transport", None)
    transport = getattr(getattr(writer, "_io_writer", None), "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    # (asyncio hands out a wrapper of the socket, which cannot close it)
    sock = getattr(sock, "_sock", sock)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def abort(nc: Client) -> None:
    """Drop ``nc``'s connection at once, without sending what is still buffered (a
    server that stopped reading would hold up the close until TCP gave up)."""
    nc._pending = []
    nc._pending_data_size = 0
    writer = getattr(nc._transport, "_io_writer", None)
    transport = getattr(writer, "transport", None)
    if isinstance(transport, asyncio.Transport):
        transport.abort()


async def drain(nc: Client, sub: Subscription, timeout: float) -> None:
    """End ``sub``, its handler first given what the server sent it before it heard
    (within ``timeout`` seconds; what is left then is dropped): an ``UNSUB``, a PING
    whose PONG comes after all of it, and the handler run on everything that came.
    nats-py's ``unsubscribe`` drops at once what is on its way, and its ``drain``
    awaits a flush that a timeout cancels (see ``_flush``). Where the connection is
    not up, or nats-py lacks what is used, it is nats-py's ``unsubscribe``."""
    send = getattr(nc, "_send_unsubscribe", None)
    sid = getattr(sub, "_id", None)
    pending = getattr(sub, "_pending_queue", None)
    try:
        if (
            send is not None
            and isinstance(sid, int)
            and isinstance(pending, asyncio.Queue)
            and nc.is_connected
        ):
            deadline = time.monotonic() + timeout
            with contextlib.suppress(Exception):  # (not answering, or gone: dropped)
                await send(sid)
                await flush(nc, timeout)
                await within(pending.join(), max(deadline - time.monotonic(), 0.0))
    finally:
        with contextlib.suppress(Exception):  # (the connection is gone: so is it)
            await sub.unsubscribe()
