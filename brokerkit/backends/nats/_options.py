"""Options of ``nats://`` URLs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from brokerkit._option_secrets import quoted_value
from brokerkit._options import BrokerOptions
from brokerkit.exceptions import InvalidOption

__all__ = ["NatsCoreOptions", "NatsOptions"]

# A JetStream stream name and a subject token at once: no dots, wildcards,
# whitespace or path separators.
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class NatsOptions(BrokerOptions):
    """Options of a ``nats://host:4222`` URL.

    ``visibility_timeout`` becomes the group consumer's ``AckWait`` when this broker
    creates it; ``max_deliveries`` is enforced by brokerkit (see ``docs/backends/nats.md``).
    """

    #: The JetStream stream that holds every topic of this broker, and the first token
    #: of every subject it writes: topic ``orders`` is subject ``<prefix>.orders``.
    prefix: str = "brokerkit"
    #: How long, in seconds, publish and settle keep retrying while the client
    #: reconnects, before giving up with ConnectionFailed (a settle gives up sooner,
    #: with StaleDelivery, when the delivery's lease runs out). Fetching never gives up.
    reconnect_timeout: float = 30.0
    #: Seconds to wait for the first connection.
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if _PREFIX.fullmatch(self.prefix) is None:
            raise InvalidOption(
                f"prefix must be 1 to 64 of letters, digits, _ and - (it names a JetStream "
                f"stream and a subject token), got {quoted_value('prefix', self.prefix)}"
            )
        if not self.connect_timeout > 0:
            raise InvalidOption(
                f"connect_timeout must be a positive number of seconds, "
                f"got {quoted_value('connect_timeout', self.connect_timeout)}"
            )


@dataclass(frozen=True)
class NatsCoreOptions(NatsOptions):
    """Options of a ``nats+core://host:4222`` URL: those of ``nats://`` but
    ``max_deliveries``, which is refused (core NATS delivers a message at most once
    and keeps nothing to deliver again). ``visibility_timeout`` is taken, for URLs
    shared with other backends, and does nothing: there are no leases. ``prefix`` is
    only the first subject token.
    """

    not_applicable: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "max_deliveries": (
                "a message is delivered at most once and never redelivered; use nats:// "
                "(JetStream) for retries"
            )
        }
    )
