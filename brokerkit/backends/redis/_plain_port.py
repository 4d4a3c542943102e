"""A TLS connect that tells a plain (non-TLS) Redis port apart at once.

A TLS client pointed at a plain Redis port sends its hello, which Redis reads as the
start of an inline command and never answers: the handshake would wait out the whole
connect timeout, every attempt. So a handshake to a ``host:port`` this process has
never shaken TLS hands with that gets no answer within :func:`probe_after` asks the
port, on a second connection, for a plain ``PING``. No Redis reply: a TLS server that
is only slow (it refuses the plain text), and the handshake goes on. A Redis reply:
either a plain port, or a port that takes both (ElastiCache's "preferred" transit
encryption, a router on the first byte) whose TLS answer is late; so the handshake is
waited for :func:`plain_grace` longer, and trusted when it ends, before the port is
refused (:class:`PlainRedisPort`, which :mod:`._refusals` reads as a
ConfigurationError). That verdict is remembered for :data:`PLAIN_VERDICT_SECONDS`:
redis-py retries a failed connect a few times, and each retry is refused at once
instead of waiting for the probe and the grace again.

:class:`PortCheck` holds the decisions and the waits (no I/O); :func:`handshake` (a
sync TLS socket) and :func:`connect_checked` (redis.asyncio's connect) drive it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable

__all__ = [
    "NOT_TLS",
    "PLAIN_GRACE",
    "PLAIN_PROBE_AFTER",
    "PLAIN_VERDICT_SECONDS",
    "PlainRedisPort",
    "PortCheck",
    "connect_checked",
    "handshake",
    "plain_grace",
    "probe_after",
    "spoke_tls",
]

#: Seconds a TLS handshake waits for the server's first answer before this client asks
#: the port for a plain PING, at the least (a TLS server answers a hello within a
#: round trip): :func:`probe_after` grows it with the connect timeout.
PLAIN_PROBE_AFTER = 0.25
#: Seconds a handshake is still waited for after the port answered the PING, at the
#: least (:func:`plain_grace`).
PLAIN_GRACE = 1.0
#: Seconds a port found plain is refused at once, without a handshake or a probe
#: (redis-py's own retries of the connect that found it; a port whose server gets TLS
#: soon after is tried again after that).
PLAIN_VERDICT_SECONDS = 5.0
#: What the message of :class:`PlainRedisPort` says (and :mod:`._refusals` looks for).
NOT_TLS = "does not speak TLS"
#: The probe's request, and how a plain Redis answers it (``+PONG``, or an error such
#: as ``-NOAUTH``); a TLS server answers plain text with an alert, or closes.
_PING = b"PING\r\n"
_PLAIN_REPLIES = (b"+", b"-")

#: The (host, port) of every server this process has shaken TLS hands with: never
#: probed again (each probe is a second connection, and a WARNING in the TLS server's
#: log), and whose later TLS errors are not read as "no TLS there".
_spoke_tls: set[tuple[str, int]] = set()
#: The (host, port) of each port found plain lately, with when that verdict lapses
#: (:func:`time.monotonic`).
_plain_until: dict[tuple[str, int], float] = {}


def probe_after(timeout: float | None) -> float:
    """How long a handshake waits before the probe: :data:`PLAIN_PROBE_AFTER`, or a
    40th of the connect ``timeout`` (up to 1 s) where that is longer: a deployment
    that sets a long connect timeout expects long round trips."""
    if timeout is None:
        return PLAIN_PROBE_AFTER
    return min(max(PLAIN_PROBE_AFTER, min(timeout / 40, 1.0)), timeout)


def plain_grace(timeout: float | None) -> float:
    """How long a handshake is still waited for once the port answered the plain PING:
    :data:`PLAIN_GRACE`, or a 20th of the connect ``timeout`` (up to 3 s)."""
    if timeout is None:
        return PLAIN_GRACE
    return max(PLAIN_GRACE, min(timeout / 20, 3.0))


class PlainRedisPort(OSError):
    """The port a TLS connection was made to answered a plain-text ``PING``, and no
    TLS handshake: it speaks Redis without TLS. (An ``OSError``, as redis-py expects
    of a failed connect.)"""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"{host}:{port} {NOT_TLS}: it gave no TLS answer, and answered a plain-text PING"
        )


class PortCheck:
    """One TLS connect to ``host:port`` within ``timeout`` seconds (None: no bound):
    whether to probe, and how long each wait is. No I/O."""

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        self.host = host
        self.port = int(port)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        #: Whether the port is probed: only one never shaken TLS hands with.
        self.probes = (host, self.port) not in _spoke_tls
        #: The wait before the probe.
        self.first_wait = probe_after(timeout)
        self._grace = plain_grace(timeout)

    def left(self) -> float | None:
        """The seconds left of the connect timeout (None: no bound)."""
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.001)

    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def probe_timeout(self) -> float:
        """How long the plain PING may take: half the connect time left (5 s without a
        connect timeout), so that a TLS server that is only slow keeps the other half."""
        left = self.left()
        return 5.0 if left is None else max(left / 2, 0.01)

    def grace(self) -> float:
        """How long the handshake is still waited for after a plain answer."""
        left = self.left()
        return self._grace if left is None else min(self._grace, left)

    @staticmethod
    def is_plain_reply(reply: bytes) -> bool:
        return reply[:1] in _PLAIN_REPLIES

    def spoke_tls(self) -> None:
        """The handshake ended: this port is not probed again."""
        _spoke_tls.add((self.host, self.port))
        _plain_until.pop((self.host, self.port), None)

    def found_plain(self) -> bool:
        """Whether this port was found plain within :data:`PLAIN_VERDICT_SECONDS`."""
        until = _plain_until.get((self.host, self.port))
        return until is not None and time.monotonic() < until

    def refusal(self) -> PlainRedisPort:
        """The verdict (remembered for :data:`PLAIN_VERDICT_SECONDS`)."""
        _plain_until[(self.host, self.port)] = time.monotonic() + PLAIN_VERDICT_SECONDS
        return PlainRedisPort(self.host, self.port)


def spoke_tls(host: str, port: int) -> bool:
    """Whether this process has shaken TLS hands with ``host:port``."""
    return (host, int(port)) in _spoke_tls


def speaks_plain_redis(check: PortCheck) -> bool:
    """Whether the port answers a plain-text ``PING`` within the probe's timeout."""
    try:
        with socket.create_connection((check.host, check.port), check.probe_timeout()) as probe:
            probe.sendall(_PING)
            return check.is_plain_reply(probe.recv(64))
    except OSError:
        return False


async def aspeaks_plain_redis(check: PortCheck) -> bool:
    """:func:`speaks_plain_redis` on the event loop."""

    async def ask() -> bool:
        reader, writer = await asyncio.open_connection(check.host, check.port)
        try:
            writer.write(_PING)
            return check.is_plain_reply(await reader.read(64))
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(ask(), check.probe_timeout())
    except (OSError, asyncio.TimeoutError):
        return False


def _shakes_hands_within(tls: ssl.SSLSocket, seconds: float | None) -> bool:
    """``tls``'s handshake, taken up where it stopped: whether it ended in ``seconds``."""
    tls.settimeout(None if seconds is None else max(seconds, 0.001))
    try:
        tls.do_handshake()
    except TimeoutError:
        return False
    return True


def handshake(tls: ssl.SSLSocket, host: str, port: int, timeout: float | None) -> None:
    """``tls``'s handshake, within ``timeout`` seconds (None: no bound), telling a
    plain port apart (see the module's docstring).

    :raises PlainRedisPort: the port speaks Redis without TLS.
    :raises TimeoutError: no handshake within ``timeout``.
    """
    check = PortCheck(host, port, timeout)
    if check.found_plain():
        raise PlainRedisPort(host, check.port)  # (not remembered longer)
    done = False
    if check.probes:
        done = _shakes_hands_within(tls, check.first_wait)
        # the server's bytes that come during the probe wait in the socket: OpenSSL
        # goes on with them, so a handshake that ended meanwhile ends at once here
        if not done and not check.expired() and speaks_plain_redis(check):
            done = _shakes_hands_within(tls, check.grace())
            if not done:
                raise check.refusal()
    if not done and (check.expired() or not _shakes_hands_within(tls, check.left())):
        raise TimeoutError(f"no TLS handshake with {host}:{port} within {timeout} s")
    check.spoke_tls()


async def _ends_within(task: asyncio.Future[None], seconds: float) -> bool:
    done, _ = await asyncio.wait({task}, timeout=seconds)
    return bool(done)


async def connect_checked(
    connect: Awaitable[None], host: str, port: int, timeout: float | None
) -> None:
    """``connect`` (redis.asyncio's: TCP and the TLS handshake, bounded by ``timeout``
    itself), telling a plain port apart as :func:`handshake` does. A connect that ended
    while the probe was out is trusted over the probe's answer.

    :raises PlainRedisPort: the port speaks Redis without TLS.
    """
    check = PortCheck(host, port, timeout)
    if check.found_plain():
        if asyncio.iscoroutine(connect):
            connect.close()  # never started
        raise PlainRedisPort(host, check.port)  # (not remembered longer)
    connecting = asyncio.ensure_future(connect)
    try:
        if (
            check.probes
            and not await _ends_within(connecting, check.first_wait)
            and await aspeaks_plain_redis(check)
            and not await _ends_within(connecting, check.grace())
        ):
            raise check.refusal()
        await connecting
    except BaseException:
        if not connecting.done():
            connecting.cancel()
            await asyncio.wait({connecting})
        raise
    check.spoke_tls()
