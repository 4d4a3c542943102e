"""One TLS context per set of TLS settings, shared by every connection that uses them.

redis-py builds a new :class:`ssl.SSLContext` for each connection, and building one
loads the system's CA store: about 75 ms of CPU with OpenSSL 3 (CPython issue 95031),
spent on the event loop's thread under asyncio. Contexts are made to be shared, so
brokerkit's clients build one per distinct set of settings and hand it to every
connection (of one server, the cluster's nodes, the sentinels and their master). A
certificate or key file that changes on disk (a rotation) is read into a new context
by the next connection.

A connection's handshake tells a plain (non-TLS) Redis port apart at once
(:mod:`._plain_port`).
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio as aioredis

from brokerkit.backends.redis._plain_port import connect_checked, handshake

__all__ = [
    "AsyncClusterTLS",
    "AsyncSharedContextSSLConnection",
    "ClusterTLS",
    "SharedContextConnectionPool",
    "SharedContextSSLConnection",
    "share_tls_context",
    "shared_context_class",
]


def share_tls_context(pool: Any) -> None:
    """Make a fresh redis-py connection pool's TLS connections share their contexts
    (pools of plain connections are left alone)."""
    pool.connection_class = shared_context_class(pool.connection_class)


class SharedContextConnectionPool(redis.ConnectionPool):
    """redis-py's pool, whose TLS connections are brokerkit's (the sync cluster client
    builds a pool of each node's, always of redis-py's class: it is given this one)."""

    def __init__(self, connection_class: Any = redis.Connection, **kwargs: Any) -> None:
        super().__init__(connection_class=shared_context_class(connection_class), **kwargs)


class ClusterTLS:
    """How the sync client (:mod:`._client`) makes a cluster client's TLS connections
    brokerkit's: with a pool class, given when it is built (it connects then)."""

    kwargs: dict[str, Any] = {"connection_pool_class": SharedContextConnectionPool}

    @staticmethod
    def adopt(cluster: Any) -> None:
        del cluster  # (the asyncio twin's)


class AsyncClusterTLS:
    """How the asyncio client (:mod:`._client_async`) makes a cluster client's TLS
    connections brokerkit's: redis.asyncio's cluster client takes no connection class
    for TLS, but connects nothing when it is built, so its nodes' class is set after."""

    kwargs: dict[str, Any] = {}

    @staticmethod
    def adopt(cluster: Any) -> None:
        kwargs = cluster.connection_kwargs
        kwargs["connection_class"] = shared_context_class(kwargs.get("connection_class"))
        for node in cluster.nodes_manager.startup_nodes.values():
            node.connection_class = shared_context_class(node.connection_class)


def shared_context_class(connection_class: Any) -> Any:
    """brokerkit's twin of redis-py's TLS connection class (``connection_class`` itself
    when it is another): shared contexts, and a plain port told apart at once."""
    if connection_class is redis.SSLConnection:
        return SharedContextSSLConnection
    if connection_class is aioredis.SSLConnection:
        return AsyncSharedContextSSLConnection
    return connection_class


class SharedContextSSLConnection(redis.SSLConnection):
    """redis-py's TLS connection, wrapping its socket with a shared context."""

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        if self.ssl_validate_ocsp or self.ssl_validate_ocsp_stapled:
            return super()._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
        context = _context(
            cert_reqs=self.cert_reqs,
            check_hostname=self.check_hostname,
            include_flags=_flags(self.ssl_include_verify_flags),
            exclude_flags=_flags(self.ssl_exclude_verify_flags),
            certfile=_stamped(self.certfile),
            keyfile=_stamped(self.keyfile),
            password=self.certificate_password,
            ca_certs=_stamped(self.ca_certs),
            ca_path=self.ca_path,
            ca_data=self.ca_data,
            min_version=self.ssl_min_version,
            ciphers=self.ssl_ciphers,
        )
        tls = context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        try:
            handshake(tls, self.host, self.port, self.socket_connect_timeout)
            tls.settimeout(self.socket_timeout)
        except BaseException:
            # the TLS socket took the raw one over: redis-py closes only the raw one,
            # and the error's traceback would keep this one (and its fd) open
            tls.close()
            raise
        return tls


class AsyncSharedContextSSLConnection(aioredis.SSLConnection):
    """redis.asyncio's TLS connection, with its context taken from the shared ones."""

    def _connection_arguments(self) -> Mapping[str, Any]:
        # Looked up in the connect step, as redis.asyncio builds its own context: a CA
        # or certificate file that cannot be loaded then fails the connect, which
        # redis-py reports as a ConnectionError (brokerkit's ConnectionFailed), as on
        # the sync API, and a rotated file is read by the next connect.
        settings = self.ssl_context
        settings.context = _context(
            cert_reqs=settings.cert_reqs,
            check_hostname=settings.check_hostname,
            include_flags=_flags(settings.include_verify_flags),
            exclude_flags=_flags(settings.exclude_verify_flags),
            certfile=_stamped(settings.certfile),
            keyfile=_stamped(settings.keyfile),
            password=settings.password,
            ca_certs=_stamped(settings.ca_certs),
            ca_path=settings.ca_path,
            ca_data=settings.ca_data,
            min_version=settings.min_version,
            ciphers=settings.ciphers,
        )
        return super()._connection_arguments()

    async def _connect(self) -> None:
        """redis.asyncio's connect (TCP and the TLS handshake, within the connect
        timeout), telling a plain port apart (:func:`._plain_port.connect_checked`)."""
        connect = super()._connect()  # type: ignore[no-untyped-call]
        await connect_checked(connect, self.host, self.port, self.socket_connect_timeout)


_Stamped = tuple[str, int, int] | None


def _stamped(path: str | None) -> _Stamped:
    """A file named in the settings, with what says whether it changed since."""
    if path is None:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return (path, -1, -1)  # let the context report the missing file
    return (path, status.st_mtime_ns, status.st_size)


def _flags(flags: list[ssl.VerifyFlags] | None) -> tuple[ssl.VerifyFlags, ...]:
    return tuple(flags or ())


def _no_pass_phrase() -> str:
    """The pass phrase of a client key that has none given: an error, not a prompt."""
    raise ssl.SSLError(
        "the client's private key (ssl_keyfile=, or the key in ssl_certfile=) is encrypted "
        "with a pass phrase, which brokerkit does not take: give the key without one"
    )


@functools.lru_cache(maxsize=32)
def _context(
    *,
    cert_reqs: ssl.VerifyMode,
    check_hostname: bool,
    include_flags: tuple[ssl.VerifyFlags, ...],
    exclude_flags: tuple[ssl.VerifyFlags, ...],
    certfile: _Stamped,
    keyfile: _Stamped,
    password: Any,
    ca_certs: _Stamped,
    ca_path: str | None,
    ca_data: str | bytes | None,
    min_version: ssl.TLSVersion | None,
    ciphers: str | None,
) -> ssl.SSLContext:
    """The context redis-py would build for these settings (same steps, same order)."""
    context = ssl.create_default_context()
    context.check_hostname = check_hostname
    context.verify_mode = cert_reqs
    for flag in include_flags:
        context.verify_flags |= flag
    for flag in exclude_flags:
        context.verify_flags &= ~flag
    if certfile or keyfile:
        context.load_cert_chain(
            certfile=certfile[0] if certfile else None,  # type: ignore[arg-type]
            keyfile=keyfile[0] if keyfile else None,
            # never OpenSSL's default, which asks the terminal (connect() refuses an
            # encrypted key; this one became encrypted on disk since)
            password=_no_pass_phrase if password is None else password,
        )
    if ca_certs or ca_path or ca_data:
        context.load_verify_locations(
            cafile=ca_certs[0] if ca_certs else None, capath=ca_path, cadata=ca_data
        )
    if min_version is not None:
        context.minimum_version = min_version
    if ciphers:
        context.set_ciphers(ciphers)
    return context
