"""The backend's half of a broker: what a backend declares, and the primitives it
implements.

:class:`AsyncBroker` builds the public API (validation, encoding, settlement
bookkeeping, the consume loop) on this class; a backend subclasses ``AsyncBroker``,
never this class directly. Kept apart so that a plugin author finds the whole contract
(the class attributes, the required primitives, and the defaults of the optional ones)
in one place.
"""

from __future__ import annotations

import abc
import contextlib
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

from brokerkit._capabilities import Capability
from brokerkit._inspect import TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit.exceptions import StaleDelivery, Unsupported

if TYPE_CHECKING:
    from brokerkit._delivery_async import AsyncDelivery
    from brokerkit._subscription_async import AsyncSubscription
    from brokerkit._url import BrokerURL

__all__ = ["AsyncBackend"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _class_or_instance(Generic[_P, _R]):
    """A method bound to the instance when called on one, else to the class (a
    classmethod that, on a broker, can read the broker: :meth:`AsyncBackend.describe`
    names the URL's scheme there). Overriding it with a classmethod still works."""

    def __init__(self, function: Callable[Concatenate[Any, _P], _R]) -> None:
        self._function = function
        self.__doc__ = function.__doc__
        self.__wrapped__ = function

    def __get__(self, instance: object, owner: type | None = None) -> Callable[_P, _R]:
        bound: Callable[_P, _R] = types.MethodType(
            self._function, owner if instance is None else instance
        )
        return bound


class AsyncBackend(abc.ABC):
    """What a backend declares and the primitives it implements; see
    :class:`AsyncBroker`, its only direct subclass, for how to write one."""

    #: The URL schemes this backend serves, such as ``("redis+list", "rediss+list")``.
    schemes: ClassVar[tuple[str, ...]] = ()
    #: The promises this backend keeps; the contract suite checks each one.
    capabilities: ClassVar[Capability] = Capability.NONE
    #: The options this backend accepts.
    Options: ClassVar[type[BrokerOptions]] = BrokerOptions
    #: Query-string keys that belong to the backend's driver (redis-py's
    #: ``socket_timeout``...): left in the URL for the backend, not read as options.
    driver_query_keys: ClassVar[frozenset[str]] = frozenset()
    #: The largest payload, in bytes, the backend can store in one message (None: no
    #: limit of its own). A larger body is refused before anything is sent.
    max_payload_bytes: ClassVar[int | None] = None
    #: Whether ``extend(seconds)`` can hold a lease for longer than the visibility
    #: timeout. A backend whose leases cannot outlast it (redis+stream: a lease is an
    #: idle time, at most the group's lease length; NATS: ``+WPI`` restarts
    #: ``AckWait``) says False, and the contract suite checks extends up to it only.
    extend_beyond_timeout: ClassVar[bool] = True
    #: Whether ``extend(seconds)`` can also shorten a lease, to ``seconds`` from the
    #: call. A backend that can only renew a lease for a length of its own (NATS:
    #: ``+WPI`` restarts ``AckWait``, whatever the seconds) says False, and the
    #: contract suite skips its check of a shortening extend.
    extend_shortens: ClassVar[bool] = True

    @_class_or_instance
    def describe(self_or_cls: AsyncBackend | type[AsyncBackend]) -> str:
        """A short name for messages. On a broker, the scheme of its URL
        (``kombu+redis``, ``rediss+list``): one class may serve several schemes, and an
        error names the one its user typed. On a class (no URL there), its first
        scheme, or the class name."""
        url = None if isinstance(self_or_cls, type) else getattr(self_or_cls, "url", None)
        if url is not None and getattr(url, "scheme", None):
            return str(url.scheme)
        cls = self_or_cls if isinstance(self_or_cls, type) else type(self_or_cls)
        return cls.schemes[0] if cls.schemes else cls.__name__

    @classmethod
    def options_of(cls, url: BrokerURL, keywords: Mapping[str, Any]) -> BrokerOptions:
        """The options of ``url``'s query and ``keywords``; an error names the URL's
        own scheme (``rediss+list``), where this backend serves it."""
        backend = url.scheme if url.scheme in cls.schemes else cls.describe()
        return cls.Options.build(url.query, keywords, backend=backend, ignore=cls.driver_query_keys)

    @_class_or_instance
    def require(
        self_or_cls: AsyncBackend | type[AsyncBackend], capability: Capability, what: str
    ) -> None:
        """Raise :class:`Unsupported` unless this backend has ``capability``; called on
        a broker, the error names its URL's scheme (see :meth:`describe`)."""
        if capability not in self_or_cls.capabilities:
            raise Unsupported(self_or_cls.describe(), capability, what)

    # -- primitives a backend implements ------------------------------------------

    @abc.abstractmethod
    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store (or send) ``messages`` to ``topic``, in order, all or none where possible."""

    @abc.abstractmethod
    async def _subscribe(self, subscription: AsyncSubscription) -> None:
        """Prepare to read: join the group, subscribe the channel. Keep per-subscription
        state in ``subscription.state``. Backends without PERSISTENT must be listening
        when this returns."""

    @abc.abstractmethod
    async def _fetch(
        self, subscription: AsyncSubscription, max_messages: int, timeout: float
    ) -> list[AsyncDelivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``timeout`` seconds
        (a finite number, possibly 0) for the first one; leased if the backend has ACK."""

    async def _unsubscribe(
        self, subscription: AsyncSubscription, unreturned: list[AsyncDelivery]
    ) -> None:
        """Stop reading. ``unreturned`` were fetched but never given to the caller:
        hand them back (:meth:`_hand_back`) so another consumer gets them at once."""
        await self._hand_back(unreturned)

    def _wake_fetches(self, subscription: AsyncSubscription) -> None:
        """``subscription`` was just marked closed: make a :meth:`_fetch` of it that
        waits return soon (it then sees ``subscription.closed``). Called from any
        thread, and must not wait (no I/O). Optional: by default such a fetch ends at
        its timeout, a second at most."""
        return

    async def _hand_back(self, deliveries: list[AsyncDelivery]) -> None:
        """Requeue deliveries that were fetched but never given to the caller."""
        if deliveries and Capability.ACK in self.capabilities:
            # Those whose lease already ran out are back in the queue: nothing to do.
            with contextlib.suppress(StaleDelivery):
                await self._nack(deliveries, True)
        self._mark(deliveries)

    async def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        """Store ``messages`` to ``topic``, held until ``delay`` seconds (> 0) from now:
        no consumer may get them before then, and they must survive the publisher's
        and every consumer's exit. Messages due at once come out in their order.
        Called only on backends that declare :attr:`Capability.DELAY`."""
        raise NotImplementedError(
            f"{type(self).__name__} declares DELAY but has no _publish_delayed"
        )

    async def _ack(self, deliveries: Sequence[AsyncDelivery]) -> None:
        """Settle ``deliveries`` as done. Raise :class:`StaleDelivery` for any whose
        lease was lost (after acking the others)."""
        raise NotImplementedError(f"{type(self).__name__} declares ACK but has no _ack")

    async def _nack(self, deliveries: Sequence[AsyncDelivery], requeue: bool) -> None:
        """Requeue ``deliveries`` (counting an attempt) or dead-letter them."""
        raise NotImplementedError(f"{type(self).__name__} declares ACK but has no _nack")

    async def _nack_with(
        self,
        deliveries: Sequence[AsyncDelivery],
        requeue: bool,
        delay: float | None,
        reason: str | None,
    ) -> None:
        """:meth:`_nack` with a delay and a reason; called instead of it only when
        either is given. ``delay`` (seconds, > 0; only with ``requeue``, only on
        backends that declare :attr:`Capability.DELAY`): redeliver no earlier than
        then, counting the attempt, or dead-letter at ``max_deliveries``. ``reason``:
        the dead letter's ``x-dead-letter-reason`` if this nack dead-letters.

        The default serves backends without DELAY: it calls :meth:`_nack` and does not
        record ``reason``."""
        if delay is not None:
            raise NotImplementedError(f"{type(self).__name__} declares DELAY but has no _nack_with")
        await self._nack(deliveries, requeue)

    async def _extend(self, deliveries: Sequence[AsyncDelivery], seconds: float) -> None:
        """Renew the leases of ``deliveries`` for ``seconds`` from now."""
        raise NotImplementedError(f"{type(self).__name__} declares ACK but has no _extend")

    async def _suspend_renewals(self) -> None:
        """Stop renewing leases in the background, as a hung consumer would, while the
        broker stays open. Only the contract suite calls this, to stage a late ack.

        A backend that renews the leases of live consumers must override it; the
        default does nothing, which is right for backends whose leases simply run out.
        """
        return

    @abc.abstractmethod
    async def _inspect(self, topic: str) -> TopicInfo:
        """A snapshot of ``topic``."""

    async def _list_topics(self) -> list[str]:
        """Every topic that holds anything. Optional: the default says it cannot."""
        raise Unsupported(self.describe(), Capability.NONE, "list its topics")

    @abc.abstractmethod
    async def _purge(self, topic: str) -> int:
        """Drop the waiting messages of ``topic``; return how many."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release connections and threads. Called once."""

    # -- bookkeeping the primitives share ------------------------------------------

    @staticmethod
    def _mark(deliveries: Iterable[AsyncDelivery]) -> None:
        """Mark ``deliveries`` settled, here only: nothing is sent to the server."""
        for delivery in deliveries:
            delivery._settled = True  # what _mark_settled does, without a call each
