"""A plugin that registers a backend for a scheme no URL can start with (``my_scheme``,
``redis stream``, ``x://``, ``''``, ``1abc``, a non-string) is refused at once with a
:class:`~brokerkit.PluginError` naming the plugin, the scheme and what a scheme is,
and nothing of that registration is kept. Before, such a scheme was registered
silently: ``brokerkit backends`` listed it, and every URL written with it was refused
as "'my_scheme://h' is not a broker URL: it needs a scheme and '://'" (which it had);
a non-string scheme raised a bare ``AttributeError: 'int' object has no attribute
'lower'``; a backend class whose ``schemes`` was a string registered each of its
characters."""

from __future__ import annotations

from typing import Any

import pytest

from brokerkit import BackendRegistry, PluginError
from brokerkit._url import BrokerURL
from brokerkit.backends.memory.broker import MemoryBroker


@pytest.mark.parametrize("scheme", ["my_scheme", "redis stream", "x://", "", "1abc", "é", 1])
def test_a_scheme_no_url_can_have_is_refused(scheme: Any) -> None:
    registry = BackendRegistry()._as_plugin("acme-plugin")
    with pytest.raises(PluginError) as caught:
        registry.add(MemoryBroker, schemes=("acme", scheme))
    text = str(caught.value)
    assert "'acme-plugin'" in text and repr(scheme) in text, text
    assert "a letter, then letters, digits and + . -" in text, text
    assert registry.schemes() == []  # nothing half-registered


def test_a_backend_whose_schemes_is_a_string_is_refused() -> None:
    class _Stringly(MemoryBroker):
        schemes = "acme"  # type: ignore[assignment]

    registry = BackendRegistry()._as_plugin("acme-plugin")
    with pytest.raises(PluginError, match="a string"):
        registry.add(_Stringly)
    assert registry.schemes() == []


def test_good_schemes_are_registered_lowercased_once() -> None:
    registry = BackendRegistry()
    registry.add(MemoryBroker, schemes=("Acme+Queue.v2-x", "acme+queue.v2-x", "acme"))
    assert registry.schemes() == ["acme", "acme+queue.v2-x"]
    for scheme in registry.schemes():
        assert registry.get(BrokerURL.parse(f"{scheme}://h").scheme).load() is MemoryBroker
