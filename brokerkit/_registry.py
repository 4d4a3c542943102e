"""Which backend serves which URL scheme, and which plugin provided it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any

from brokerkit._url import is_scheme
from brokerkit.exceptions import (
    BackendUnavailable,
    PluginError,
    SchemeConflict,
    UnknownScheme,
)

if TYPE_CHECKING:
    from brokerkit._broker import Broker
    from brokerkit._broker_async import AsyncBroker
    from brokerkit._capabilities import Capability

__all__ = ["BackendInfo", "BackendRegistry"]

_REDIS_SCHEMES = ("redis+list", "redis+stream", "redis+pubsub")
#: kombu's (and Celery's) RabbitMQ schemes: brokerkit serves each with a "kombu+" prefix.
_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_KOMBU_INSTALL = 'pip install "pybrokerkit[kombu]"'


@dataclass
class BackendInfo:
    """One registered backend.

    :ivar target: the class, or ``"module:Class"`` until it is first loaded.
    :ivar schemes: the URL schemes it serves.
    :ivar plugin: the name of the plugin that registered it.
    :ivar install_hint: what to install when its driver is missing.
    :ivar aio_target: the native asyncio class (or ``"module:Class"``) for the same
        schemes, or None: :func:`brokerkit.aio.connect` then runs :attr:`target`
        through a thread adapter.
    """

    target: type[Broker] | str
    schemes: tuple[str, ...]
    plugin: str
    install_hint: str | None = None
    aio_target: type[AsyncBroker] | str | None = None
    _error: BackendUnavailable | None = field(default=None, repr=False)

    def load(self) -> type[Broker]:
        """The backend class, imported on first use.

        :raises BackendUnavailable: its module (or its driver) cannot be imported.
        :raises PluginError: what the plugin registered is no
            :class:`~brokerkit.Broker` subclass (an asyncio class among them), or its
            ``capabilities`` is no :class:`~brokerkit.Capability`.
        """
        if isinstance(self.target, str):
            loaded: type[Broker] = self._checked(self._import(self.target), aio=False)
            self.target = loaded
            return loaded
        checked: type[Broker] = self._checked(self.target, aio=False)
        return checked

    def load_async(self) -> type[AsyncBroker] | None:
        """The native asyncio class, imported on first use; None if there is none.

        :raises BackendUnavailable: its module (or its driver) cannot be imported.
        :raises PluginError: what the plugin registered as ``aio=`` is no
            :class:`~brokerkit.aio.AsyncBroker` subclass, or its ``capabilities`` is
            no :class:`~brokerkit.Capability`.
        """
        if isinstance(self.aio_target, str):
            loaded: type[AsyncBroker] = self._checked(self._import(self.aio_target), aio=True)
            self.aio_target = loaded
            return loaded
        if self.aio_target is None:
            return None
        checked: type[AsyncBroker] = self._checked(self.aio_target, aio=True)
        return checked

    def _checked(self, loaded: Any, *, aio: bool) -> Any:
        """``loaded`` if it is a class of the kind its slot takes (an
        :class:`~brokerkit.aio.AsyncBroker` subclass for ``aio=``, else a
        :class:`~brokerkit.Broker` subclass) whose ``capabilities`` is a
        :class:`~brokerkit.Capability`: anything else would connect and then
        misbehave (an asyncio class's un-awaited ``publish`` loses the message).

        :raises PluginError: naming the plugin, the schemes, what is wrong and what
            is valid."""
        from brokerkit._broker import Broker
        from brokerkit._broker_async import AsyncBroker
        from brokerkit._capabilities import Capability

        registered = self.aio_target if aio else self.target
        where = (
            f"plugin {self.plugin!r} registered {_describe(registered)} "
            f"{'as aio= ' if aio else ''}for {', '.join(map(repr, self.schemes))}"
        )
        wanted, other = (AsyncBroker, Broker) if aio else (Broker, AsyncBroker)
        if not (isinstance(loaded, type) and issubclass(loaded, wanted)):
            if isinstance(loaded, type) and issubclass(loaded, other):
                name = loaded.__name__
                if aio:
                    why = (
                        f"{name} is a sync brokerkit.Broker class: aio= takes a "
                        "brokerkit.aio.AsyncBroker subclass (leave aio= out for a sync "
                        "class alone: brokerkit.aio.connect then runs it in worker threads)"
                    )
                else:
                    why = (
                        f"{name} is a brokerkit.aio.AsyncBroker (asyncio) class: the backend "
                        f"must be a brokerkit.Broker subclass; register "
                        f"brokerkit.aio.bridged({name}) as the backend, and {name} as aio="
                    )
            else:
                kind = "brokerkit.aio.AsyncBroker" if aio else "brokerkit.Broker"
                slot = "aio=" if aio else "a backend"
                found = (
                    f"that is {_describe(loaded)}," if isinstance(registered, str) else "that is"
                )
                why = f"{found} not a {kind} subclass, which {slot} must be"
            raise PluginError(f"{where}, but {why}")
        capabilities = getattr(loaded, "capabilities", None)
        if not isinstance(capabilities, Capability):
            raise PluginError(
                f"{where}, but its capabilities are {capabilities!r}, a "
                f"{type(capabilities).__name__}, not a brokerkit.Capability: combine the "
                "flags with |, as Capability.PERSISTENT | Capability.ACK "
                "(Capability(0) for none)"
            )
        return loaded

    def _import(self, target: str) -> Any:
        if self._error is not None:
            raise self._error
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name == module_name:
                raise PluginError(
                    f"plugin {self.plugin!r} registered {target!r}, "
                    f"but there is no module {module_name!r}"
                ) from exc
            hint = self.install_hint or "install the plugin's dependencies"
            self._error = BackendUnavailable(
                f"the backend for {', '.join(self.schemes)} needs a package that is not "
                f"installed ({exc.name or exc}); {hint}"
            )
            raise self._error from exc
        except Exception as exc:  # the plugin's own module is broken: name the plugin
            raise PluginError(
                f"plugin {self.plugin!r} registered {target!r} for "
                f"{', '.join(map(repr, self.schemes))}, but importing {module_name} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise PluginError(
                f"plugin {self.plugin!r} registered {target!r}, but {module_name} "
                f"has no {attribute!r}"
            ) from None

    @property
    def available(self) -> bool:
        """Whether :meth:`load` succeeds (False: a dependency is not installed).

        :raises PluginError: the plugin registered something that is no backend (see
            :meth:`load`): a broken plugin, not a missing dependency.
        """
        try:
            self.load()
        except BackendUnavailable:
            return False
        return True

    @property
    def capabilities(self) -> Capability | None:
        """The backend's capabilities, or None when a dependency is not installed.

        :raises PluginError: as :attr:`available`.
        """
        return self.load().capabilities if self.available else None


class BackendRegistry:
    """Backends by URL scheme. Plugins fill it in their
    ``brokerkit_register_backends`` hook; :func:`brokerkit.connect` reads it."""

    def __init__(self) -> None:
        self._by_scheme: dict[str, BackendInfo] = {}
        self._plugin = "<direct>"
        # Installed plugins that implement no brokerkit hook (set by load_registry):
        # named when a scheme is unknown, as their author's likeliest mistake.
        self._idle: tuple[str, ...] = ()

    def add(
        self,
        backend: type[Broker] | str,
        *,
        schemes: Sequence[str] | None = None,
        install_hint: str | None = None,
        replace: bool = False,
        aio: type[AsyncBroker] | str | None = None,
    ) -> None:
        """Register ``backend`` for its schemes.

        :param backend: a :class:`~brokerkit.Broker` subclass, or ``"module:Class"``
            to import it only when a URL asks for it.
        :param schemes: required for a lazy ``"module:Class"``; defaults to the
            class's own :attr:`~brokerkit.Broker.schemes`.
        :param install_hint: said when the lazy import fails, e.g.
            ``pip install "pybrokerkit[redis]"``.
        :param replace: take over schemes another plugin registered.
        :param aio: the backend's native asyncio twin (an
            :class:`~brokerkit.aio.AsyncBroker` subclass, or ``"module:Class"``) for
            :func:`brokerkit.aio.connect`. Without it, the asyncio API runs ``backend``
            in worker threads (correct, and slower).
        :raises SchemeConflict: a scheme is taken and ``replace`` is false.
        :raises PluginError: no scheme, or one that is no URL scheme (see
            :func:`~brokerkit._url.is_scheme`); a lazy target not written
            ``"module:Class"``. Nothing is registered then.
        """
        if schemes is None:
            if isinstance(backend, str):
                raise PluginError(
                    f"plugin {self._plugin!r} registered {backend!r} lazily without schemes; "
                    "pass schemes=(...) with a 'module:Class' target"
                )
            schemes = getattr(backend, "schemes", ())
        if isinstance(schemes, str | bytes):  # each character would be a scheme
            raise PluginError(
                f"plugin {self._plugin!r} registered {backend!r} with schemes={schemes!r}, "
                f"a string; schemes is a sequence of names, such as ({schemes!r},)"
            )
        schemes = tuple(schemes)  # read once: a generator would be empty below
        for scheme in schemes:
            if not is_scheme(scheme):
                raise PluginError(
                    f"plugin {self._plugin!r} registered {backend!r} for the scheme "
                    f"{scheme!r}, which no URL can start with: a scheme is a letter, then "
                    "letters, digits and + . - (such as 'redis+stream'), without '://'"
                )
        names = tuple(dict.fromkeys(s.lower() for s in schemes))
        if not names:
            raise PluginError(f"plugin {self._plugin!r} registered {backend!r} with no scheme")
        if not replace:
            for scheme in names:
                taken = self._by_scheme.get(scheme)
                if taken is not None:
                    raise SchemeConflict(
                        f"the scheme {scheme!r} is claimed by both plugin {taken.plugin!r} "
                        f"and plugin {self._plugin!r}; uninstall or block one "
                        "(BROKERKIT_BLOCK_PLUGINS), or register with replace=True"
                    )
        for target in (backend, aio):
            if isinstance(target, str) and ":" not in target:
                raise PluginError(f"a lazy backend is written 'module:Class', got {target!r}")
        info = BackendInfo(backend, names, self._plugin, install_hint, aio)
        for scheme in names:
            displaced = self._by_scheme.get(scheme)
            if displaced is not None:  # replaced: it serves its other schemes only
                displaced.schemes = tuple(s for s in displaced.schemes if s != scheme)
            self._by_scheme[scheme] = info

    def get(self, scheme: str) -> BackendInfo:
        """The backend for ``scheme``.

        :raises UnknownScheme: none is registered; the error lists those that are.
        """
        info = self._by_scheme.get(scheme.lower())
        if info is not None:
            return info
        hint = self._hint(scheme.lower())
        if hint is None and self._idle:
            close = get_close_matches(scheme.lower(), self.schemes(), n=1)
            plural = len(self._idle) > 1
            hint = (f"did you mean {close[0]!r}? " if close else "") + (
                f"the installed plugin{'s' if plural else ''} {', '.join(self._idle)} "
                f"implement{'' if plural else 's'} no brokerkit hook, and so "
                f"register{'' if plural else 's'} no backend: is a hook function "
                "missing its @brokerkit.hookimpl?"
            )
        raise UnknownScheme(scheme, self.schemes(), hint=hint)

    def _hint(self, scheme: str) -> str | None:
        """What to write instead of ``scheme``, a scheme no backend serves that users of
        redis-py, kombu, Celery or nats-py write; None for any other (the error then
        offers a close match). Only the scheme is read: no part of the URL, so no
        password, can be echoed."""
        if scheme in ("redis", "rediss"):
            options = ", ".join(repr(s.replace("redis", scheme, 1)) for s in _REDIS_SCHEMES)
            hint = (
                f"a bare {scheme!r} does not say which Redis structure to use; use one of {options}"
            )
            if scheme == "redis" and "kombu+redis" in self._by_scheme:
                hint += " (or 'kombu+redis' for kombu's Redis transport, as Celery uses it)"
            return hint
        if scheme == "unix":
            return (
                "Unix sockets are not supported: the Redis backends reach a server by host "
                "and port, as in 'redis+stream://localhost:6379/0'"
            )
        if scheme in _AMQP_SCHEMES:
            kombu = f"kombu+{scheme}"
            hint = (
                f"brokerkit reaches RabbitMQ through kombu: use '{kombu}://' with the rest of "
                "the URL as it is"
            )
            if kombu not in self._by_scheme:
                hint += (
                    f", once the kombu backend is installed ({_KOMBU_INSTALL}; no plugin "
                    f"serves {kombu!r} here: see also BROKERKIT_BLOCK_PLUGINS)"
                )
            return hint
        if scheme == "tls":
            return (
                "a NATS URL is 'nats://host:4222' (JetStream) or 'nats+core://host:4222', "
                "also for a server that requires TLS (nats-py then upgrades the connection, "
                "trusting the system's certificate authorities); nats-py's 'tls://' has no "
                "brokerkit form"
            )
        if scheme in ("ws", "wss"):
            return (
                "NATS over WebSocket has no brokerkit form (nats-py's ws:// and wss://): "
                "connect to the server's client port, as 'nats://host:4222' (JetStream) or "
                "'nats+core://host:4222'"
            )
        return None

    def schemes(self) -> list[str]:
        """Every registered scheme, sorted."""
        return sorted(self._by_scheme)

    def __iter__(self) -> Iterator[BackendInfo]:
        """Each registered backend once, in registration order."""
        seen: set[int] = set()
        for info in self._by_scheme.values():
            if id(info) not in seen:
                seen.add(id(info))
                yield info

    def _as_plugin(self, name: str) -> BackendRegistry:
        self._plugin = name
        return self


def _describe(target: object) -> str:
    """A registered target, for an error: a lazy one as written, a class by its path."""
    if isinstance(target, str):
        return repr(target)
    if isinstance(target, type):
        return f"{target.__module__}.{target.__qualname__}"
    return f"a {type(target).__name__} ({target!r:.80})"
