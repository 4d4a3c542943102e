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

A read "without waiting" must not put the socket in non-blocking mode either: py-amqp
reads a frame to its end, and on a non-blocking socket it retried ``recv`` on EAGAIN
in a busy loop until the rest of a frame came (a big message over a slow link: a core
spent, the lock held). It reads only once :func:`has_bytes` says something came, and
then blocks a moment for each part (:func:`read_wait`).
"""

from __future__ import annotations

import select
import socket
import ssl

__all__ = ["has_bytes", "read_wait", "wait_readable"]

#: How long a read without a timeout waits for each part of a frame begun.
MID_FRAME = 0.001


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
        if fd >= 0:
            _readable_within(fd, seconds)
    except (OSError, ValueError):
        return


def has_bytes(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read now (bytes, its end, an error; over TLS,
    bytes the TLS layer holds decrypted too), without waiting. A socket closed or
    replaced meanwhile has (the read finds out what became of it)."""
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        fd = sock.fileno()
        return fd < 0 or _readable_within(fd, 0.0)
    except (OSError, ValueError):
        return True


def _readable_within(fd: int, seconds: float) -> bool:
    """Whether ``fd`` has something to read (bytes, its end, an error) within
    ``seconds``."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(max(seconds, 0.0) * 1000.0))
    readable, _, broken = select.select([fd], [], [fd], max(seconds, 0.0))  # (no poll: Windows)
    return bool(readable or broken)


def read_wait(sock: socket.socket | None, timeout: float) -> float | None:
    """The timeout for py-amqp's read of ``sock`` (each ``recv``) for a read that asked
    for ``timeout`` seconds: that, if more than 0; without one, None (do not read) if
    nothing came yet, else :data:`MID_FRAME`: py-amqp keeps what it read of a frame
    that does not come in full by then, for the next read."""
    if timeout > 0 or sock is None:
        return timeout
    return MID_FRAME if has_bytes(sock) else None
