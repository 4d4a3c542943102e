"""A kombu connection for a ``kombu+<transport>://`` URL, not yet connected: its
transport, host, credentials and virtual host from the URL, its TLS settings for
``kombu+amqps://``, and its timeouts and heartbeat from the options (:mod:`._link`
connects it and keeps it connected)."""

from __future__ import annotations

import ssl
from typing import Any

from kombu.connection import Connection as KombuConnection

from brokerkit._url import BrokerURL
from brokerkit.backends.kombu._frames import frame_handler
from brokerkit.backends.kombu._options import KombuAMQPOptions

__all__ = ["is_tls", "kombu_connection", "tls_settings"]


def is_tls(url: BrokerURL) -> bool:
    """Whether ``url`` is ``kombu+amqps://``."""
    return url.scheme.split("+", 1)[1] in ("amqps", "pyamqps")


def tls_settings(url: BrokerURL, options: KombuAMQPOptions) -> dict[str, Any]:
    """py-amqp's TLS settings for ``kombu+amqps://``: the certificate must be valid for
    the URL's host and signed by a trusted CA (the system's, or ``ssl_ca_certs``)."""
    settings: dict[str, Any] = {
        # py-amqp then builds a PROTOCOL_TLS_CLIENT context with check_hostname on.
        "server_hostname": url.host or "localhost",
        "cert_reqs": ssl.CERT_REQUIRED,
    }
    if options.ssl_ca_certs is not None:
        settings["ca_certs"] = options.ssl_ca_certs
    if options.ssl_certfile is not None:
        settings["certfile"] = options.ssl_certfile
        settings["keyfile"] = options.ssl_keyfile
    return settings


def kombu_connection(url: BrokerURL, options: KombuAMQPOptions, name: str) -> Any:
    """A kombu connection (not yet connected) for a ``kombu+<transport>://`` URL."""
    transport = url.scheme.split("+", 1)[1]
    tls = is_tls(url)
    if tls:
        transport = transport[:-1]
    vhost = url.path[1:] if url.path.startswith("/") else url.path  # decoded already
    return KombuConnection(  # type: ignore[no-untyped-call]
        hostname=url.host or "localhost",
        port=url.port,
        userid=url.username,
        password=url.password,
        virtual_host=vhost or "/",
        transport=transport,
        ssl=tls_settings(url, options) if tls else False,
        connect_timeout=options.connect_timeout,
        heartbeat=options.heartbeat,
        transport_options={
            "client_properties": {"connection_name": name},
            # (a message whose properties are not UTF-8 is read, not raised: see there)
            "frame_handler": frame_handler,
        },
    )
