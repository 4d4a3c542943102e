"""Backends found through pluggy: built-ins as plugins, conflicts, lazy loading, blocking."""

from __future__ import annotations

import subprocess
import sys
import types

import pluggy
import pytest

import brokerkit
from brokerkit import BackendUnavailable, PluginError, SchemeConflict, UnknownScheme
from brokerkit._plugins import DEFAULT_PLUGINS, load_registry, plugin_manager
from brokerkit.backends.memory import MemoryBroker


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


class OtherMemory(MemoryBroker):
    schemes = ("memory",)


def test_built_in_backends_are_registered_by_their_plugin_modules() -> None:
    registry = load_registry(_manager())
    by_scheme = {s: info.plugin for info in registry for s in info.schemes}
    assert by_scheme["memory"] == "brokerkit.backends.memory"
    for scheme in ("redis+list", "rediss+list", "redis+stream", "redis+pubsub"):
        assert by_scheme[scheme] == "brokerkit.backends.redis"
    assert set(by_scheme.values()) == set(DEFAULT_PLUGINS)


def test_two_plugins_claiming_one_scheme_is_an_error_naming_both() -> None:
    intruder = _plugin("intruder_plugin", (OtherMemory, {}))
    with pytest.raises(SchemeConflict) as excinfo:
        load_registry(_manager(intruder))
    message = str(excinfo.value)
    assert "'memory'" in message
    assert "intruder_plugin" in message
    assert "brokerkit.backends.memory" in message


def test_replace_true_takes_over_a_scheme() -> None:
    override = _plugin("override_plugin", (OtherMemory, {"replace": True}))
    registry = load_registry(_manager(override))
    info = registry.get("memory")
    assert info.load() is OtherMemory
    assert info.plugin == "override_plugin"


def test_lazy_backend_with_a_missing_driver_gives_the_install_hint() -> None:
    lazy = _plugin(
        "lazy_plugin",
        ("json:NoSuchClass", {"schemes": ("nope",)}),
        (
            "brokerkit_test_missing_driver:Broker",
            {"schemes": ("needsdriver",), "install_hint": 'pip install "needsdriver"'},
        ),
    )
    registry = load_registry(_manager(lazy))
    with pytest.raises(PluginError, match="has no 'NoSuchClass'"):
        registry.get("nope").load()
    with pytest.raises(PluginError, match="no module 'brokerkit_test_missing_driver'"):
        registry.get("needsdriver").load()


def test_lazy_backend_whose_driver_import_fails(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "bk_fake_backend.py"  # type: ignore[operator]
    package.write_text("import bk_fake_driver_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lazy = _plugin(
        "fake_plugin",
        ("bk_fake_backend:Broker", {"schemes": ("fake",), "install_hint": 'pip install "fake[x]"'}),
    )
    info = load_registry(_manager(lazy)).get("fake")
    with pytest.raises(BackendUnavailable, match=r'pip install "fake\[x\]"'):
        info.load()
    assert info.available is False
    assert info.capabilities is None


def test_lazy_registration_needs_schemes() -> None:
    with pytest.raises(PluginError, match="without schemes"):
        load_registry(_manager(_plugin("bad", ("some.module:Cls", {}))))


def test_unknown_scheme_lists_installed_ones_with_did_you_mean() -> None:
    with pytest.raises(UnknownScheme) as excinfo:
        brokerkit.connect("redis+streams://localhost/0")
    message = str(excinfo.value)
    assert "did you mean 'redis+stream'" in message
    assert "memory" in message


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_bare_redis_names_the_three_redis_schemes(scheme: str) -> None:
    with pytest.raises(UnknownScheme) as excinfo:
        brokerkit.connect(f"{scheme}://localhost:6379/0")
    for variant in ("list", "stream", "pubsub"):
        assert f"'{scheme}+{variant}'" in str(excinfo.value)


def test_a_plugin_can_be_blocked_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERKIT_BLOCK_PLUGINS", "brokerkit.backends.redis")
    registry = load_registry(plugin_manager(entry_points=False))
    schemes = registry.schemes()
    assert "memory" in schemes
    assert not [s for s in schemes if s.startswith(("redis", "rediss"))], schemes


def test_list_backends_reports_schemes_capabilities_and_plugin() -> None:
    infos = {info.plugin: info for info in brokerkit.list_backends()}
    memory = infos["brokerkit.backends.memory"]
    assert memory.schemes == ("memory",)
    assert memory.capabilities == MemoryBroker.capabilities


def test_importing_brokerkit_imports_no_driver() -> None:
    code = (
        "import sys, brokerkit; brokerkit.list_backends(); "
        "b = brokerkit.connect('memory://'); b.close(); "
        "print(sorted(m for m in ('redis', 'hiredis', 'msgpack', 'typer') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_plugin_whose_registration_raises_is_named() -> None:
    """A third-party plugin's failing hook is a PluginError naming it and the way out,
    not an anonymous error from every connect()."""
    broken = types.ModuleType("broken_plugin")

    @brokerkit.hookimpl
    def brokerkit_register_backends(registry: brokerkit.BackendRegistry) -> None:
        raise RuntimeError("plugin config missing")

    broken.brokerkit_register_backends = brokerkit_register_backends  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as excinfo:
        load_registry(_manager(broken))
    message = str(excinfo.value)
    assert "'broken_plugin'" in message
    assert "RuntimeError: plugin config missing" in message
    assert "BROKERKIT_BLOCK_PLUGINS=broken_plugin" in message


def test_a_replaced_scheme_is_listed_under_its_new_backend_only() -> None:
    override = _plugin(
        "override_plugin",
        ("brokerkit.backends.memory:MemoryBroker", {"schemes": ("redis+list",), "replace": True}),
    )
    registry = load_registry(_manager(override))
    owners = [info.plugin for info in registry if "redis+list" in info.schemes]
    assert owners == ["override_plugin"]
    redis = next(info for info in registry if info.plugin == "brokerkit.backends.redis")
    assert "rediss+list" in redis.schemes  # the schemes it was not asked for stay its own
    assert registry.get("rediss+list") is redis


def test_schemes_given_as_one_string_are_refused() -> None:
    """schemes="mem2" would register 'm', 'e', 'm', '2'."""
    stringy = _plugin(
        "stringy_plugin", ("brokerkit.backends.memory:MemoryBroker", {"schemes": "mem2"})
    )
    with pytest.raises(PluginError, match=r"schemes='mem2', a string; .*\('mem2',\)"):
        load_registry(_manager(stringy))
