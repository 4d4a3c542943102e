"""An installed plugin that implements no brokerkit hook (its hook function lacks
``@brokerkit.hookimpl``) is named when a URL asks for a scheme no backend serves: its
author's likeliest mistake. Before, the error said only that no backend is installed
for the scheme, and left the plugin that was meant to serve it unmentioned."""

from __future__ import annotations

import types

import pytest

import brokerkit
from brokerkit import UnknownScheme
from brokerkit._plugins import load_registry, plugin_manager
from brokerkit.backends.memory import MemoryBroker


class Plugins37Broker(MemoryBroker):
    schemes = ("plugins37idle",)


def _undecorated_plugin() -> types.ModuleType:
    """A plugin module whose hook function was never marked with @brokerkit.hookimpl."""
    module = types.ModuleType("brokerkit_plugins37_idle")

    def brokerkit_register_backends(registry: brokerkit.BackendRegistry) -> None:
        registry.add(Plugins37Broker)  # pragma: no cover (never called: the point)

    module.brokerkit_register_backends = brokerkit_register_backends  # type: ignore[attr-defined]
    return module


def test_an_unknown_scheme_names_the_plugins_that_implement_no_hook() -> None:
    manager = plugin_manager(entry_points=False)
    manager.register(_undecorated_plugin(), name="plugins37idle")
    registry = load_registry(manager)
    with pytest.raises(UnknownScheme) as raised:
        registry.get("plugins37idle")
    message = str(raised.value)
    assert (
        "the installed plugin 'plugins37idle' (brokerkit_plugins37_idle) implements no "
        "brokerkit hook, and so registers no backend: is a hook function missing its "
        "@brokerkit.hookimpl?"
    ) in message
    assert "(installed schemes: " in message


def test_a_close_scheme_is_still_offered() -> None:
    manager = plugin_manager(entry_points=False)
    manager.register(_undecorated_plugin(), name="plugins37idle")
    with pytest.raises(UnknownScheme) as raised:
        load_registry(manager).get("memry")
    assert "did you mean 'memory'? the installed plugin 'plugins37idle'" in str(raised.value)


def test_without_such_a_plugin_the_error_is_as_before() -> None:
    with pytest.raises(UnknownScheme) as raised:
        load_registry(plugin_manager(entry_points=False)).get("plugins37idle")
    assert "hookimpl" not in str(raised.value)
