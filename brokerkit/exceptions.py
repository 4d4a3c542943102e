"""The errors brokerkit raises.

Every error is a :class:`BrokerError`, so ``except brokerkit.BrokerError`` catches
anything brokerkit raised on purpose. Driver errors (redis-py and friends) never
escape: they are mapped to one of these with ``raise ... from exc``.

The tree::

    BrokerError
    ├── ConfigurationError          the URL, an option or the installation is wrong
    │   ├── InvalidURL
    │   ├── InvalidOption
    │   ├── UnknownScheme
    │   └── BackendUnavailable      the backend's driver is not installed
    ├── PluginError
    │   └── SchemeConflict          two plugins claim one URL scheme
    ├── ConnectionFailed            the server could not be reached, or went away
    ├── ReplicationTimeout          a write reached the master, not enough replicas
    ├── PermissionDenied            the server refused a command to this user (an ACL)
    ├── Unsupported                 the backend lacks a capability the call needs
    ├── InvalidMessage              a topic, header or body that cannot be published
    │   ├── InvalidTopic
    │   └── SerializationError
    ├── IncompatibleTopic           the topic's storage holds something else
    ├── DeliveryError               an ack, nack or extend that cannot be done
    │   ├── AlreadySettled
    │   └── StaleDelivery           the lease expired; the message went elsewhere
    └── BrokerClosed

No message of any of these ever contains a password: URLs are shown masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from brokerkit._capabilities import Capability
    from brokerkit._delivery import Delivery
    from brokerkit._delivery_async import AsyncDelivery

__all__ = [
    "AlreadySettled",
    "BackendUnavailable",
    "BrokerClosed",
    "BrokerError",
    "ConfigurationError",
    "ConnectionFailed",
    "DeliveryError",
    "IncompatibleTopic",
    "InvalidMessage",
    "InvalidOption",
    "InvalidTopic",
    "InvalidURL",
    "PermissionDenied",
    "PluginError",
    "ReplicationTimeout",
    "SchemeConflict",
    "SerializationError",
    "StaleDelivery",
    "UnknownScheme",
    "Unsupported",
]


class BrokerError(Exception):
    """Base class of every error brokerkit raises.

    Every one pickles and copies as it is (its message, its args and its attributes),
    so that one raised in a worker process reaches its parent. The deliveries one
    holds (:attr:`StaleDelivery.deliveries`, :attr:`ReplicationTimeout.stale`) stay
    in their process: a copy keeps them, a pickled one arrives with none (a delivery
    belongs to its broker, in the process that received it).
    """

    #: The attributes that hold deliveries: kept by a copy, left empty by pickle.
    _local_attributes: ClassVar[tuple[str, ...]] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # Made again from its args and attributes: BaseException's own reduce calls
        # the class with self.args, which a subclass's __init__ may not take.
        state = {
            name: _Local(value) if name in self._local_attributes else value
            for name, value in self.__dict__.items()
        }
        return (_remade, (type(self), self.args), state or None)

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        for name, value in (state or {}).items():
            setattr(self, name, value.value if isinstance(value, _Local) else value)


def _remade(cls: type[BrokerError], args: tuple[Any, ...]) -> BrokerError:
    """An error of class ``cls`` with ``args``, made without its ``__init__`` (pickle and
    copy then set its attributes)."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class _Local:
    """An error's deliveries, as pickle and copy see them: a copy (deep too) keeps them,
    pickle sends an empty tuple."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> _Local:
        return self


class ConfigurationError(BrokerError):
    """The URL, an option or the installation does not allow what was asked."""


class InvalidURL(ConfigurationError):
    """A broker URL that cannot be parsed."""


class InvalidOption(ConfigurationError):
    """An option that is unknown, of the wrong type or out of range."""


class UnknownScheme(ConfigurationError):
    """No installed backend serves the URL's scheme.

    :ivar scheme: the scheme that was asked for.
    :ivar installed: the schemes that are installed.
    """

    def __init__(self, scheme: str, installed: Iterable[str], hint: str | None = None) -> None:
        self.scheme = scheme
        self.installed = sorted(installed)
        message = f"no backend is installed for the URL scheme {scheme!r}"
        if hint is None:
            close = get_close_matches(scheme, self.installed, n=1)
            if close:
                hint = f"did you mean {close[0]!r}?"
        if hint:
            message += f"; {hint}"
        message += f" (installed schemes: {', '.join(self.installed) or 'none'})"
        super().__init__(message)


class BackendUnavailable(ConfigurationError):
    """The backend exists but its driver is not installed."""


class PluginError(BrokerError):
    """A plugin could not be loaded or registered."""


class SchemeConflict(PluginError):
    """Two plugins registered a backend for the same scheme."""


class ConnectionFailed(BrokerError):
    """The server could not be reached, or closed the connection and did not come back."""


class ReplicationTimeout(BrokerError):
    """A publish or an ack was made on the master, but fewer replicas than the
    ``replicas`` option asks for confirmed it within ``replica_timeout``.

    The write is not undone: the message is stored (or the ack applied) on the master,
    and a failover in the next moments may lose it. A publish that fails this way may
    be retried; the consumers then see the message twice if both copies survive.

    An ack or nack that fails this way may also have left some deliveries to another
    consumer that had claimed them (what :class:`StaleDelivery` would have said): they
    are in :attr:`stale`, and the settlement hooks are told they were not settled.

    :ivar acknowledged: how many replicas confirmed the write.
    :ivar wanted: how many were asked for.
    :ivar stale: the deliveries of an ack or nack that it did not settle, their leases
        having expired (another consumer claimed them); empty otherwise.
    """

    _local_attributes = ("stale",)

    def __init__(
        self,
        message: str,
        acknowledged: int = 0,
        wanted: int = 0,
        stale: Sequence[Delivery | AsyncDelivery] = (),
    ) -> None:
        self.acknowledged = acknowledged
        self.wanted = wanted
        self.stale = tuple(stale)
        super().__init__(message)


class PermissionDenied(BrokerError):
    """The server refused a command to the connected user (a Redis ACL, say).

    The message names the command, or the key or channel, that was refused, so that an
    operator can grant it; ``docs/security.md`` lists what each backend needs. It is
    never reported as a lost lease or a lost connection.

    :ivar command: the refused command (``"XPENDING"``), when the server named it.
    """

    def __init__(self, message: str, command: str | None = None) -> None:
        self.command = command
        super().__init__(message)


class Unsupported(BrokerError):
    """The backend lacks a capability that the call needs.

    :ivar capability: the missing capability.
    """

    def __init__(self, backend: str, capability: Capability, what: str) -> None:
        self.capability = capability
        if not capability:  # no capability flag names it: the backend just has no way
            super().__init__(f"{backend} cannot {what}")
            return
        super().__init__(
            f"{backend} cannot {what}: it does not have the {capability.name} capability"
        )


class InvalidMessage(BrokerError, ValueError):
    """A topic, header or body that cannot be published. Nothing was published."""


class InvalidTopic(InvalidMessage):
    """A topic (or pattern) name that is not valid."""


class SerializationError(InvalidMessage):
    """A body that the serializer cannot encode, or a payload it cannot decode."""


class IncompatibleTopic(BrokerError):
    """The topic's storage holds data of another kind (a Redis key of the wrong type)."""


class DeliveryError(BrokerError):
    """An ack, nack or extend that cannot be carried out."""


class AlreadySettled(DeliveryError):
    """The delivery was already acked or nacked."""


class StaleDelivery(DeliveryError):
    """The delivery's lease expired before it was settled.

    The message may already be with another consumer, whose delivery this one
    did not touch.

    :ivar deliveries: the deliveries that were stale.
    """

    _local_attributes = ("deliveries",)

    def __init__(self, deliveries: Sequence[Delivery | AsyncDelivery], detail: str = "") -> None:
        self.deliveries = tuple(deliveries)
        ids = ", ".join(d.id for d in self.deliveries[:5])
        more = "" if len(self.deliveries) <= 5 else f" and {len(self.deliveries) - 5} more"
        message = (
            f"the lease of message {ids}{more} expired before it was settled; "
            "it was left to whichever consumer holds it now"
        )
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class BrokerClosed(BrokerError):
    """The broker or subscription was closed."""
