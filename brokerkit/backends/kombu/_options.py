"""Options of the ``kombu+...://`` URLs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from brokerkit._option_secrets import quoted_value
from brokerkit._options import BrokerOptions
from brokerkit.exceptions import InvalidOption

__all__ = ["TLS_OPTIONS", "KombuAMQPOptions", "KombuOptions", "KombuVirtualOptions"]

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: RabbitMQ refuses to declare an exchange or queue whose name starts with this.
_RESERVED = "amq."
#: AMQP sends the heartbeat interval as a short (whole seconds).
_MAX_HEARTBEAT = 65535
#: The options that only mean something over TLS (``kombu+amqps://``).
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True)
class KombuOptions(BrokerOptions):
    """Options of every ``kombu+...://`` URL.

    ``visibility_timeout`` is enforced by the consuming broker itself (see
    :doc:`/backends/kombu`): a delivery left unsettled that long is handed back to
    the server, and one whose process died comes back as soon as its connection
    closes.
    """

    #: The first part of every exchange and queue name: ``<prefix>|<topic>[|<group>]``.
    prefix: str = "brokerkit"
    #: How long, in seconds, to keep reconnecting (kombu's backoff) after the server
    #: goes away before giving up with ConnectionFailed.
    reconnect_timeout: float = 30.0
    #: Seconds to wait for the TCP connection and the AMQP handshake.
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if _PREFIX.fullmatch(self.prefix) is None:
            raise InvalidOption(
                "prefix must be 1 to 64 of letters, digits and _ . : -, "
                f"got {quoted_value('prefix', self.prefix)}"
            )
        if not self.connect_timeout > 0:
            raise InvalidOption(
                f"connect_timeout must be a positive number of seconds, "
                f"got {quoted_value('connect_timeout', self.connect_timeout)}"
            )


@dataclass(frozen=True)
class KombuAMQPOptions(KombuOptions):
    """Options of ``kombu+amqp://`` and ``kombu+amqps://`` (RabbitMQ)."""

    #: Seconds between AMQP heartbeats (whole seconds, RabbitMQ may lower it). A server
    #: that sends nothing, not even a heartbeat, for twice this long is a lost
    #: connection: brokerkit reconnects, then raises ConnectionFailed after
    #: ``reconnect_timeout``; it bounds every wait on the socket too.
    heartbeat: int = 10
    #: Seconds a publish waits for RabbitMQ to take its messages (to write them, and
    #: for their confirms): a memory or disk alarm makes RabbitMQ stop reading from a
    #: connection that publishes until the alarm clears. Past it the publish raises
    #: ConnectionFailed, its messages maybe stored, maybe not.
    publish_timeout: float = 30.0
    #: ``kombu+amqps://`` only: a CA file (PEM) to verify the server's certificate
    #: with, instead of the system's trusted CAs (a private CA, a self-signed server).
    ssl_ca_certs: str | None = None
    #: ``kombu+amqps://`` only: a client certificate (PEM), for a server that asks.
    ssl_certfile: str | None = None
    #: ``kombu+amqps://`` only: the private key of ``ssl_certfile`` (when not in it).
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prefix.startswith(_RESERVED):
            raise InvalidOption(
                f"prefix must not start with {_RESERVED!r}: RabbitMQ reserves exchange and "
                f"queue names that start with it and refuses to declare them, got "
                f"{quoted_value('prefix', self.prefix)}"
            )
        if not 1 <= self.heartbeat <= _MAX_HEARTBEAT:
            raise InvalidOption(
                f"heartbeat must be a whole number of seconds from 1 to {_MAX_HEARTBEAT}, "
                f"got {quoted_value('heartbeat', self.heartbeat)}"
            )
        if not self.publish_timeout > 0:
            raise InvalidOption(
                f"publish_timeout must be a positive number of seconds, "
                f"got {quoted_value('publish_timeout', self.publish_timeout)}"
            )
        for name in TLS_OPTIONS:
            path = getattr(self, name)
            if path is None:
                continue
            if not os.path.isfile(path):
                problem = "no such file (give the path of a PEM file this process can read)"
            elif not os.access(path, os.R_OK):
                problem = "the file cannot be read by this process"
            else:
                continue
            raise InvalidOption(f"{name}={quoted_value(name, path)}: {problem}")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise InvalidOption(
                "ssl_keyfile is the key of a client certificate: give ssl_certfile too"
            )


@dataclass(frozen=True)
class KombuVirtualOptions(KombuOptions):
    """Options of ``kombu+memory://`` and ``kombu+redis://``.

    ``max_deliveries`` is refused: a virtual transport counts no deliveries and the
    backend has no dead-letter topic. ``visibility_timeout`` is taken, for URLs
    shared with other backends, and does nothing: a fetched message has left its
    queue, there is no lease.
    """

    not_applicable: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "max_deliveries": (
                "a message leaves its queue when it is fetched, nothing counts its deliveries "
                "and there is no dead-letter topic; use kombu+amqp:// (RabbitMQ) for retries"
            )
        }
    )
