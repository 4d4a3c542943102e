"""A ``brokerkit.plugins`` entry point that fails to import is named in the error,
with its package and how to block it, as a plugin whose registration fails already
was. Before, the error said only "a brokerkit plugin failed to load: No module named
'...'": which of the installed plugins broke every ``connect()``, even memory://,
was left to guess, and so was the name to put in BROKERKIT_BLOCK_PLUGINS."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerkit import PluginError
from brokerkit._plugins import BLOCK_ENV, plugin_manager

PLUGIN_MODULE = "brokerkit_core29_broken_plugin"


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package installed on sys.path with one brokerkit entry point, whose module
    needs a driver that is not installed; its entry point's name."""
    info = tmp_path / "pybrokerkit_core29_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pybrokerkit-core29-broken\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[brokerkit.plugins]\ncore29broken = {PLUGIN_MODULE}\n")
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text("import no_such_driver_core29\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    return "core29broken"


def test_a_plugin_that_fails_to_import_is_named_with_how_to_block_it(broken_plugin: str) -> None:
    with pytest.raises(PluginError) as raised:
        plugin_manager()
    message = str(raised.value)
    assert f"the brokerkit plugin {broken_plugin!r}" in message
    assert f"({PLUGIN_MODULE} of the package 'pybrokerkit-core29-broken')" in message
    assert "ModuleNotFoundError: No module named 'no_such_driver_core29'" in message
    assert message.endswith(f"block it with {BLOCK_ENV}={broken_plugin}")


def test_the_named_plugin_blocked_the_others_load(
    broken_plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BLOCK_ENV, broken_plugin)
    manager = plugin_manager()
    assert not manager.has_plugin(broken_plugin)
    assert manager.has_plugin("sqlite")  # the example plugin, installed in the venv
