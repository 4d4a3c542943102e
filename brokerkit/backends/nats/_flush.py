"""A flush of a nats-py connection (a PING, and its PONG awaited) that a timeout or a
cancel leaves the connection working.

nats-py (2.16) keeps the futures of the PINGs it awaits a PONG for in a queue, and sets
the result of the first as a PONG comes without asking whether it was cancelled; its
own ``flush`` cancels that future on a timeout, and so does cancelling the flush. The
PONG that comes later raised ``InvalidStateError`` in nats-py's read loop, which ended
it: the connection, still marked connected, read nothing more (no message delivered,
no reply, a flush returning without a round trip) until nats-py's pings found it stale
minutes later.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.aio.client import Client

__all__ = ["SUBSCRIBE_WAIT", "flush"]

#: Seconds a subscribe waits for the server to confirm its interest (nats-py's default
#: for a flush).
SUBSCRIBE_WAIT = 10.0


async def flush(nc: Client, timeout: float) -> None:
    """Return once the server answers a PING written now, within ``timeout`` seconds:
    nats-py's ``flush``, but the future that awaits the PONG is never cancelled.
    Given up (timed out, or the caller cancelled), it stays in nats-py's queue in its
    place (a PONG answers the oldest PING outstanding) and takes its PONG when that
    comes. Where nats-py would not send a PING (the connection not up, its read loop
    gone) or lacks the private attributes used, it is nats-py's own ``flush``.

    :raises nats.errors.FlushTimeoutError: no PONG within ``timeout``.
    :raises nats.errors.ConnectionClosedError: the connection is closed.
    """
    send_ping = getattr(nc, "_send_ping", None)
    reading = getattr(nc, "_reading_task", None)
    if (
        send_ping is None
        or not isinstance(getattr(nc, "_pongs", None), list)
        or reading is None
        or reading.done()
        or not nc.is_connected
    ):
        await nc.flush(timeout=timeout)  # type: ignore[arg-type]  # (any seconds)
        return
    pong: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    await send_ping(pong)
    # (asyncio.wait, unlike wait_for, cancels nothing it waits for)
    await asyncio.wait({pong}, timeout=timeout)
    if not pong.done():
        raise nats.errors.FlushTimeoutError
