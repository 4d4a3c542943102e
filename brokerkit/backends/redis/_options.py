"""Options shared by the Redis backends, and the split between them and redis-py's."""

from __future__ import annotations

import re
from dataclasses import dataclass

from brokerkit._options import BrokerOptions
from brokerkit.exceptions import InvalidOption

__all__ = ["DRIVER_QUERY_KEYS", "RedisOptions"]

#: Query keys handed to redis-py as connection arguments, not read by brokerkit.
DRIVER_QUERY_KEYS = frozenset(
    {
        "db",
        "health_check_interval",
        "max_connections",
        "protocol",
        "retry_on_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_timeout",
        "client_name",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class RedisOptions(BrokerOptions):
    """Options of every ``redis+...://`` URL, besides redis-py's own connection
    arguments (``socket_timeout``, ``health_check_interval``, ``ssl_cert_reqs``...),
    which pass through to the driver."""

    #: The first part of every key brokerkit writes: ``<prefix>:{<topic>}...``.
    prefix: str = "brokerkit"
    #: How long, in seconds, to keep retrying (with backoff and jitter) after the
    #: server goes away before giving up with ConnectionFailed.
    reconnect_timeout: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if _PREFIX.fullmatch(self.prefix) is None:
            raise InvalidOption(
                f"prefix must be 1 to 64 of letters, digits and _ . : -, got {self.prefix!r}"
            )
        if self.reconnect_timeout < 0:
            raise InvalidOption(
                f"reconnect_timeout must be 0 or more seconds, got {self.reconnect_timeout!r}"
            )
