"""Waiting for a socket to have something to read, holding no lock.

A broker's subscriptions share its reading connection, and py-amqp's connection is
not thread-safe: every read of it is made under the link's lock. A receive waiting on
an empty queue used to read the socket itself, holding the lock for each slice of its
wait; with many subscriptions waiting in as many threads (a worker's idle topics, the
asyncio adapter's receives), they took turns holding it, and a receive whose message
had come (read into its inbox by another thread's wait) waited for the lock behind
all of them: seconds, past its own timeout. A waiting receive now only watches the
socket, without the lock, and takes the lock to read once there is something to read
(:meth:`Link.await_frames <brokerkit.backends.kombu._link.Link.await_frames>`).
"""

from __future__ import annotations

import select
import socket

__all__ = ["wait_readable"]


def wait_readable(sock: socket.socket, seconds: float) -> None:
    """Return once ``sock`` has something to read (a frame, its end, an error) or
    ``seconds`` have passed. Never raises: a socket closed or replaced meanwhile (the
    connection lost, or renewed by another thread) ends the wait at once, and the read
    that follows under the lock finds out what became of it.

    (Over TLS, bytes another read already took from the socket into the TLS layer do
    not show here; the caller reads after every wait, whether this saw anything or not.)
    """
    try:
        fd = sock.fileno()
        if fd < 0:
            return
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            poller.poll(max(seconds, 0.0) * 1000.0)
        else:  # (no poll: Windows)
            select.select([fd], [], [fd], max(seconds, 0.0))
    except (OSError, ValueError):
        return
