"""Options of the ``kombu+...://`` URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from brokerkit._options import BrokerOptions, _shown
from brokerkit.exceptions import InvalidOption

__all__ = ["KombuOptions"]

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


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
                f"got {_shown('prefix', self.prefix)}"
            )
        if not self.connect_timeout > 0:
            raise InvalidOption(
                f"connect_timeout must be a positive number of seconds, "
                f"got {_shown('connect_timeout', self.connect_timeout)}"
            )
