"""What a plugin registers is checked when its class is loaded: the backend must be a
``brokerkit.Broker`` subclass, ``aio=`` an ``AsyncBroker`` one, and each one's
``capabilities`` a ``Capability``. Anything else is one PluginError naming the
plugin, the scheme, what is wrong and what is valid, and ``brokerkit backends`` lists
that backend with its error beside the others.

Before, an ``AsyncBroker`` subclass registered as the sync class connected, and its
``publish`` returned an un-awaited coroutine: the message was lost, silently.
``capabilities`` written as a tuple connected and then misbehaved, and made
``brokerkit backends`` fail for every backend ("unexpected AttributeError: 'tuple'
object has no attribute 'names'"); ``capabilities = 3`` failed on subscribe with a
TypeError; a lazy target that is no class failed with "... has no attribute
'from_url'"."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pluggy
import pytest

import brokerkit
import brokerkit._plugins as plugins_module
from brokerkit import BackendUnavailable, BrokerURL, Capability, PluginError
from brokerkit._plugins import load_registry, plugin_manager
from brokerkit.aio import bridged
from brokerkit.backends.memory import MemoryBroker
from brokerkit.backends.memory.broker_async import AsyncMemoryBroker


class TupleCapabilities(MemoryBroker):
    schemes = ("plugins37tuple",)
    capabilities = (Capability.PERSISTENT, Capability.ACK)  # type: ignore[assignment]


class IntCapabilities(MemoryBroker):
    schemes = ("plugins37int",)
    capabilities = 3  # type: ignore[assignment]


class AsyncTupleCapabilities(AsyncMemoryBroker):
    capabilities = (Capability.PERSISTENT,)  # type: ignore[assignment]


class NotABroker:
    schemes = ("plugins37instance",)


def not_a_class() -> None:
    """A lazy target that names a function."""


def _plugin(name: str, *targets: tuple[object, dict[str, object]]) -> types.ModuleType:
    module = types.ModuleType(name)

    @brokerkit.hookimpl
    def brokerkit_register_backends(registry: brokerkit.BackendRegistry) -> None:
        for target, kwargs in targets:
            registry.add(target, **kwargs)  # type: ignore[arg-type]

    module.brokerkit_register_backends = brokerkit_register_backends  # type: ignore[attr-defined]
    return module


def _manager(*plugins: types.ModuleType) -> pluggy.PluginManager:
    manager = plugin_manager(entry_points=False)
    for plugin in plugins:
        manager.register(plugin, name=plugin.__name__)
    return manager


def _load_error(scheme: str, target: object, **kwargs: object) -> str:
    plugin = _plugin("plugins37_plugin", (target, {"schemes": (scheme,), **kwargs}))
    info = load_registry(_manager(plugin)).get(scheme)
    load = info.load_async if kwargs.get("aio") is not None else info.load
    with pytest.raises(PluginError) as raised:
        load()
    message = str(raised.value)
    assert message.startswith("plugin 'plugins37_plugin' registered "), message
    assert f"for {scheme!r}" in message
    return message


@pytest.mark.parametrize("lazy", [False, True], ids=["class", "lazy"])
def test_an_asyncio_class_registered_as_the_backend_is_refused_naming_bridged(
    lazy: bool,
) -> None:
    target = (
        "brokerkit.backends.memory.broker_async:AsyncMemoryBroker" if lazy else AsyncMemoryBroker
    )
    message = _load_error("plugins37async", target)
    assert "AsyncMemoryBroker is a brokerkit.aio.AsyncBroker (asyncio) class" in message
    assert "must be a brokerkit.Broker subclass" in message
    assert "register brokerkit.aio.bridged(AsyncMemoryBroker) as the backend" in message


def test_the_asyncio_class_through_bridged_works() -> None:
    """What the error says to do: the message is published and received."""
    plugin = _plugin(
        "plugins37_bridged",
        (bridged(AsyncMemoryBroker), {"schemes": ("plugins37bridged",), "aio": AsyncMemoryBroker}),
    )
    info = load_registry(_manager(plugin)).get("plugins37bridged")
    assert info.load_async() is AsyncMemoryBroker
    url = BrokerURL.parse("plugins37bridged://plugins37-bridged")
    with (
        info.load().from_url(url) as broker,
        broker.subscribe("plugins37-topic", group="g") as subscription,
    ):
        broker.publish("plugins37-topic", b"kept")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == b"kept"
        delivery.ack()


def test_a_sync_class_registered_as_aio_is_refused() -> None:
    message = _load_error("plugins37aio", MemoryBroker, aio=MemoryBroker)
    assert "as aio=" in message
    assert "MemoryBroker is a sync brokerkit.Broker class" in message
    assert "aio= takes a brokerkit.aio.AsyncBroker subclass" in message


@pytest.mark.parametrize(
    ("cls", "given"),
    [(TupleCapabilities, "a tuple"), (IntCapabilities, "an int")],
    ids=["tuple", "int"],
)
def test_capabilities_that_are_no_capability_are_refused(cls: type, given: str) -> None:
    message = _load_error(cls.schemes[0], cls)
    assert (
        f"but its capabilities are {cls.capabilities!r}, a {given[given.index(' ') + 1 :]}"
        in message
    )
    assert "not a brokerkit.Capability: combine the flags with |" in message


def test_an_aio_class_with_capabilities_that_are_no_capability_is_refused() -> None:
    message = _load_error("plugins37aiocaps", MemoryBroker, aio=AsyncTupleCapabilities)
    assert "not a brokerkit.Capability" in message


def test_a_lazy_target_that_is_no_class_is_refused() -> None:
    message = _load_error("plugins37func", f"{__name__}:not_a_class")
    assert f"registered '{__name__}:not_a_class'" in message
    assert "that is a function" in message
    assert "not a brokerkit.Broker subclass, which a backend must be" in message


def test_an_instance_registered_instead_of_its_class_is_refused() -> None:
    message = _load_error("plugins37instance", NotABroker())
    assert "a NotABroker" in message
    assert "not a brokerkit.Broker subclass" in message


def test_a_lazy_module_that_fails_to_import_names_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module that raises something other than ImportError (a missing setting)."""
    (tmp_path / "brokerkit_plugins37_raises.py").write_text("raise RuntimeError('no config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _load_error("plugins37raises", "brokerkit_plugins37_raises:Broker")
    assert "importing brokerkit_plugins37_raises failed: RuntimeError: no config" in message


def test_the_built_in_backends_still_load() -> None:
    for info in load_registry(_manager()):
        try:
            assert issubclass(info.load(), brokerkit.Broker)
            loaded = info.load_async()
        except BackendUnavailable:  # a driver not installed here
            continue
        assert loaded is None or issubclass(loaded, brokerkit.aio.AsyncBroker)


def test_brokerkit_backends_lists_a_broken_backend_beside_the_others(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("typer")
    from brokerkit.cli._app import run

    plugin = _plugin(
        "plugins37_plugin",
        (TupleCapabilities, {}),
        (NotABroker(), {}),
    )
    monkeypatch.setattr(plugins_module, "_cached", load_registry(_manager(plugin)))
    assert run(["backends", "--json"]) == 0
    rows = {row["schemes"][0]: row for row in json.loads(capsys.readouterr().out)}
    broken = rows["plugins37tuple"]
    assert broken["capabilities"] is None
    assert "not a brokerkit.Capability" in broken["status"]
    assert "not a brokerkit.Broker subclass" in rows["plugins37instance"]["status"]
    assert rows["memory"]["status"] == "ok"
    assert "FANOUT" in rows["memory"]["capabilities"]
    assert run(["backends"]) == 0  # the table, too
    assert "plugins37tuple" in capsys.readouterr().out


def test_brokerkit_backends_lists_a_broken_aio_class_as_broken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sync class registered as ``aio=`` was listed ``ok`` (the listing loaded the
    sync class alone) though ``brokerkit.aio.connect`` refuses it (review 37)."""
    pytest.importorskip("typer")
    from brokerkit.cli._app import run

    plugin = _plugin(
        "plugins37_plugin", (MemoryBroker, {"schemes": ("plugins37aiols",), "aio": MemoryBroker})
    )
    monkeypatch.setattr(plugins_module, "_cached", load_registry(_manager(plugin)))
    assert run(["backends", "--json"]) == 0
    rows = {row["schemes"][0]: row for row in json.loads(capsys.readouterr().out)}
    assert "aio= takes a brokerkit.aio.AsyncBroker subclass" in rows["plugins37aiols"]["status"]
    assert rows["memory"]["status"] == "ok"
