"""What a failed connection attempt of kombu+amqp means, as brokerkit's error
(:meth:`Link._connect_again <brokerkit.backends.kombu._link.Link>` raises it).

kombu retries, with backoff for up to ``reconnect_timeout``, only what it takes for a
passing fault (a refused or reset TCP connection, a timeout); a refusal by RabbitMQ
itself (a wrong user name or password, a virtual host that does not exist or the user
may not use) ends the attempt at once, and trying again would not help. So the error
says what happened, and only claims the wait of ``reconnect_timeout`` where it waited.
No error names the password (RabbitMQ does not echo it; the URL is shown masked).
"""

from __future__ import annotations

from collections.abc import Callable

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit._url import BrokerURL
from brokerkit.exceptions import ConnectionFailed

__all__ = ["connect_error"]

#: What a refusal adds: the server said no, kombu did not try again, nor does brokerkit.
_NOT_RETRIED = "not retried: RabbitMQ refused it, which trying again does not change"


def connect_error(
    exc: BaseException,
    url: BrokerURL,
    reconnect_timeout: float,
    *,
    retried: bool,
    hide: Callable[[str], str],
) -> ConnectionFailed:
    """The error for ``exc``, which ended kombu's ``ensure_connection`` to ``url``;
    ``retried``: kombu takes it for a passing fault, and tried again until
    ``reconnect_timeout`` ran out; ``hide`` masks a secret in the server's text."""
    server = url.render()
    text = hide(getattr(exc, "reply_text", "") or str(exc))
    user = repr(url.username) if url.username else "'guest' (kombu's default: the URL names none)"
    if isinstance(exc, amqp.exceptions.AccessRefused):
        return ConnectionFailed(
            f"RabbitMQ on {server} refused access for the user {user} ({text}): check the "
            "user name and password in the URL, and that the user exists and may log in "
            f"(RabbitMQ's log says why); {_NOT_RETRIED}"
        )
    vhost = url.path[1:] if url.path.startswith("/") else url.path
    if isinstance(exc, amqp.exceptions.NotAllowed) and "vhost" in text:
        return ConnectionFailed(
            f"RabbitMQ on {server} refused the user {user} the virtual host "
            f"{hide(vhost or '/')!r} ({text}): check the virtual host in the URL's path "
            f"(kombu+amqp://host/<vhost>), that it exists and that the user has permissions "
            f"on it; {_NOT_RETRIED}"
        )
    detail = f"{type(exc).__name__}: {text}"
    if retried:
        return ConnectionFailed(
            f"cannot connect to {server} within reconnect_timeout={reconnect_timeout}s: {detail}"
        )
    if isinstance(exc, amqp.exceptions.AMQPError):  # (RabbitMQ closed the connection)
        return ConnectionFailed(f"cannot connect to {server}: {detail} ({_NOT_RETRIED})")
    return ConnectionFailed(f"cannot connect to {server}: {detail} (not retried)")
