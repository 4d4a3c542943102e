"""Finding backends: pluggy, the ``brokerkit.plugins`` entry points and the built-ins."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from difflib import get_close_matches
from typing import Any

import pluggy

from brokerkit import hookspecs
from brokerkit._broker import Broker
from brokerkit._hooks import RELAY, ObservedPluginManager
from brokerkit._registry import BackendInfo, BackendRegistry
from brokerkit._url import BrokerURL
from brokerkit.exceptions import BrokerError, InvalidURL, PluginError

__all__ = [
    "BLOCK_ENV",
    "DEFAULT_PLUGINS",
    "DEFAULT_URL",
    "ENTRY_POINT_GROUP",
    "backend_for",
    "connect",
    "list_backends",
    "load_registry",
    "plugin_manager",
]

#: The built-in plugins, registered exactly as third-party ones are.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "brokerkit.backends.memory",
    "brokerkit.backends.redis",
    "brokerkit.backends.nats",
    "brokerkit.backends.kombu",
)
#: The entry-point group third-party plugins register under.
ENTRY_POINT_GROUP = "brokerkit.plugins"
#: Comma-separated plugin names (entry-point names, or built-in module names) to skip.
BLOCK_ENV = "BROKERKIT_BLOCK_PLUGINS"
#: Read by :func:`connect` when it is given no URL.
URL_ENV = "BROKERKIT_URL"
DEFAULT_URL = "memory://"

_lock = threading.Lock()
_cached: BackendRegistry | None = None


def plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the built-in plugins and, unless told otherwise, every
    plugin installed under the ``brokerkit.plugins`` entry-point group."""
    manager = ObservedPluginManager("brokerkit")
    manager.add_hookspecs(hookspecs)
    blocked = {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()}
    for name in blocked:
        manager.set_blocked(name)
    for name in DEFAULT_PLUGINS:
        if name not in blocked:
            manager.register(importlib.import_module(name), name=name)
    if entry_points:
        _load_entry_points(manager)
    manager.check_pending()
    return manager


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    """Load the ``brokerkit.plugins`` entry points one at a time, so that one that
    fails to load is named, with its package and how to block it.

    :raises PluginError: an entry point failed to import, or to register, or it
        implements a hook brokerkit does not have (a misspelled name)."""
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        package = f" of the package {dist.name!r}" if dist is not None else ""
        plugin = f"the brokerkit plugin {entry_point.name!r} ({entry_point.value}{package})"
        fix = f"fix or uninstall it, or block it with {BLOCK_ENV}={entry_point.name}"
        try:
            manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=entry_point.name)
        except Exception as exc:
            raise PluginError(
                f"{plugin} failed to load: {type(exc).__name__}: {exc}; {fix}"
            ) from exc
        # (here, not in check_pending() after all of them: the plugins loaded so far
        # passed, so an unknown hook is this plugin's, and the error can name it)
        unknown = _unknown_hook(manager)
        if unknown is not None:
            raise PluginError(f"{plugin} implements {unknown}; {fix}")


def _unknown_hook(manager: pluggy.PluginManager) -> str | None:
    """An implementation of a hook no brokerkit hookspec declares (pluggy's
    ``check_pending``), described with the hook names that are valid; None if none."""
    hooks = {name: caller for name, caller in vars(manager.hook).items() if name[0] != "_"}
    valid = sorted(name for name, caller in hooks.items() if caller.has_spec())
    for name, caller in hooks.items():
        if caller.has_spec() or not any(not i.optionalhook for i in caller.get_hookimpls()):
            continue
        close = get_close_matches(name, valid, n=1)
        meant = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"{name!r}, a hook brokerkit does not have: {meant}"
            f"(brokerkit's hooks: {', '.join(valid)})"
        )
    return None


def load_registry(manager: pluggy.PluginManager | None = None) -> BackendRegistry:
    """A fresh registry, filled by every plugin's ``brokerkit_register_backends``.

    Plugins are called in the order they were registered (the built-ins first, then
    entry points), each under its own name, so that a third-party plugin can
    ``replace=True`` a built-in scheme and a conflict names both plugins.
    """
    manager = manager or plugin_manager()
    registry = BackendRegistry()
    hook_name = "brokerkit_register_backends"
    plugins = [impl.plugin for impl in getattr(manager.hook, hook_name).get_hookimpls()]
    for plugin in plugins:
        # Through pluggy, so that an implementation gets only the arguments it
        # declares (hooks can grow), one plugin at a time, so that each registration
        # names its plugin.
        others = [p for p in manager.get_plugins() if p is not plugin]
        call_one = manager.subset_hook_caller(hook_name, remove_plugins=others)
        name = manager.get_name(plugin) or repr(plugin)
        try:
            call_one(registry=registry._as_plugin(name))
        except BrokerError:  # the registry's own errors name the plugin already
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {name!r} failed to register its backends: {type(exc).__name__}: "
                f"{exc}; fix or uninstall it, or block it with {BLOCK_ENV}={name}"
            ) from exc
    registry._as_plugin("<direct>")
    registry._idle = tuple(
        _described(manager, plugin)
        for plugin in manager.get_plugins()
        if not manager.get_hookcallers(plugin)
    )
    return registry


def _described(manager: pluggy.PluginManager, plugin: object) -> str:
    """A plugin's name, with its module's where that differs (an entry point's)."""
    name = manager.get_name(plugin) or repr(plugin)
    module = getattr(plugin, "__name__", None)
    return f"{name!r} ({module})" if isinstance(module, str) and module != name else repr(name)


def _registry() -> BackendRegistry:
    global _cached
    with _lock:
        if _cached is None:
            _cached = load_registry(RELAY.manager())
        return _cached


def list_backends() -> list[BackendInfo]:
    """Every installed backend: its schemes, capabilities and providing plugin."""
    return list(_registry())


def connect(url: str | BrokerURL | None = None, **options: Any) -> Broker:
    """Connect to the broker at ``url``, with the backend registered for its scheme.

    :param url: such as ``memory://``, ``redis+stream://localhost:6379/0``; when
        omitted, the ``BROKERKIT_URL`` environment variable, else ``memory://``.
    :param options: backend options; they win over the URL's query string.
    :raises InvalidURL: the URL cannot be parsed (or, with no URL given,
        ``BROKERKIT_URL`` is set but empty: the error names the variable).
    :raises UnknownScheme: no installed backend serves the scheme (the error lists
        those that are, with a did-you-mean).
    :raises InvalidOption: an option is unknown or invalid (the error lists the valid ones).
    :raises BackendUnavailable: the backend's driver is not installed.
    """
    parsed, info = backend_for(url)
    return info.load().from_url(parsed, **options)


def backend_for(url: str | BrokerURL | None) -> tuple[BrokerURL, BackendInfo]:
    """The parsed URL (``BROKERKIT_URL``, else ``memory://``, when None) and the
    registered backend for its scheme.

    :raises InvalidURL: as for :func:`connect`; for a ``BROKERKIT_URL`` that is set but
        empty, or no URL, the error names the variable (the caller gave no URL)."""
    parsed = BrokerURL.parse(url) if url is not None else _url_from_environment()
    return parsed, _registry().get(parsed.scheme)


def _url_from_environment() -> BrokerURL:
    """``BROKERKIT_URL`` parsed, or ``memory://`` when it is unset."""
    given = os.environ.get(URL_ENV)
    if given is None:
        return BrokerURL.parse(DEFAULT_URL)
    if not given.strip():
        # (not taken for unset: that would put a deployment on memory:// unnoticed)
        raise InvalidURL(
            f"{URL_ENV} is set but empty, and no URL was given: set it to a broker URL "
            f"(such as redis+stream://localhost:6379/0), or unset it for {DEFAULT_URL}"
        )
    try:
        return BrokerURL.parse(given)
    except InvalidURL as exc:  # (its text masks the URL's secrets)
        raise InvalidURL(f"{exc} (from {URL_ENV}: no URL was given)") from None
