"""What a NATS connection that cannot be made says, in its error and in the log.

nats-py tries a server again and again (every ``RETRY_WAIT``, a first connection for
about ``connect_timeout``, a lost one forever) and tells each failed try to its error
callback; the first connection then raises ``NoServersError``, which names no cause.
:class:`Attempts` keeps the last cause, logs each distinct one once until a connection
is made (not every try: twenty lines in five seconds said the same), and turns a
first connection's failure into a :class:`~brokerkit.ConnectionFailed` naming the
cause and what to check, as the Redis backends do (:func:`nothing_answered`). No text
here holds the URL's password or token: each is masked wherever a driver's text would
quote it.
"""

from __future__ import annotations

import logging
import ssl

import nats.errors

from brokerkit._error_text import error_text, nothing_answered
from brokerkit._logging import log_fields
from brokerkit._secret_options import mask_secrets
from brokerkit._url import BrokerURL
from brokerkit.exceptions import ConnectionFailed

__all__ = ["Attempts"]

log = logging.getLogger("brokerkit.nats")


class Attempts:
    """The failed tries of one client's connection to ``server`` (``host:port``, for
    messages), between two connections made."""

    def __init__(self, server: str, url: BrokerURL) -> None:
        self._server = server
        self._secrets = [url.password, url.username if url.username_is_secret else None]
        #: The last try's error since a connection was made (None: no try failed).
        self._last: BaseException | None = None
        #: The texts of the errors logged since a connection was made.
        self._logged: set[str] = set()

    def text(self, exc: BaseException) -> str:
        """``Type: message`` of ``exc`` (its type alone when its message is empty, as
        a TimeoutError's is), without the URL's password or token."""
        said = error_text(exc)
        return mask_secrets(
            f"{type(exc).__name__}: {said}" if said else type(exc).__name__, self._secrets
        )

    def failed(self, exc: BaseException) -> None:
        """A try to connect failed with ``exc`` (nats-py's error callback, while no
        connection is up): kept for :meth:`refusal`, and logged unless an error of the
        same text was logged since the last connection was made."""
        self._last = exc
        text = self.text(exc)
        if text in self._logged:
            return
        self._logged.add(text)
        log.warning(
            "a try to connect to NATS at %s failed: %s (logged once, however many tries "
            "fail so, until a connection is made or tried anew)",
            self._server,
            text,
            extra=log_fields(),
        )

    def connected(self) -> None:
        """A connection was made, or a first connection is tried anew (a broker that
        never connected tries again at its next use): a later failure is news again."""
        self._last = None
        self._logged.clear()

    def refusal(self, exc: BaseException, timeout: float) -> ConnectionFailed:
        """The error of a first connection that nats-py gave up on with ``exc``, after
        tries of ``timeout`` seconds each: it names the cause its error callback saw
        (``NoServersError`` names none), and what to check."""
        no_cause = isinstance(exc, nats.errors.NoServersError) and self._last is not None
        cause = self._last if no_cause and self._last is not None else exc
        text = self.text(cause)
        where = self._server
        if isinstance(cause, nats.errors.AuthorizationError) or (
            "authorization violation" in text.lower()
        ):
            return ConnectionFailed(
                f"could not connect to NATS at {where}: the server refused the URL's "
                "credentials (Authorization Violation); check the user and password, or "
                "the token, in the URL"
            )
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return ConnectionFailed(
                f"could not connect to NATS at {where}: the TLS handshake failed ({text}); "
                "the server requires TLS, which nats-py speaks with the system's "
                "certificate authorities (brokerkit passes no TLS options): the server's "
                "certificate must be one they trust, issued for the URL's host"
            )
        if isinstance(cause, TimeoutError):
            return ConnectionFailed(
                nothing_answered("NATS", where, f"no NATS greeting within {timeout:g} s: {text}")
                + ": the port must be a NATS server's client port (4222 by default), which "
                "greets a client at once"
            )
        if isinstance(cause, OSError):  # refused, an unknown host, no route
            return ConnectionFailed(nothing_answered("NATS", where, text))
        return ConnectionFailed(f"could not connect to NATS at {where}: {text}")
