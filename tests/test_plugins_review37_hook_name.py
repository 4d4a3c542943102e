"""A plugin whose hook function is misspelled (``brokerkit_register_backend``, one
letter short) is a PluginError naming the entry point, its package, the hook it
implements, the one it was likely meant to be and how to block it, as every other
plugin that fails to load already was. Before, every ``connect()``, even memory://,
raised pluggy's own ``PluginValidationError: unknown hook ...`` (the CLI said
"unexpected PluginValidationError"): pluggy's ``check_pending`` ran after all the
entry points, outside the code that names them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brokerkit import PluginError
from brokerkit._plugins import BLOCK_ENV, plugin_manager

PLUGIN_MODULE = "brokerkit_plugins37_misspelled"
ENTRY_POINT = "plugins37misspelled"


@pytest.fixture
def misspelled_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package installed on sys.path with one brokerkit entry point, whose hook
    function's name lacks the final "s"; the directory it is installed in."""
    info = tmp_path / "pybrokerkit_plugins37_misspelled-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pybrokerkit-plugins37-misspelled\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        f"[brokerkit.plugins]\n{ENTRY_POINT} = {PLUGIN_MODULE}\n"
    )
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(
        "import brokerkit\n"
        "from brokerkit.backends.memory import MemoryBroker\n\n\n"
        "class Plugins37Broker(MemoryBroker):\n"
        "    schemes = ('plugins37',)\n\n\n"
        "@brokerkit.hookimpl\n"
        "def brokerkit_register_backend(registry):\n"
        "    registry.add(Plugins37Broker)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    return tmp_path


def test_a_misspelled_hook_is_named_with_the_hook_meant_and_how_to_block_it(
    misspelled_plugin: Path,
) -> None:
    with pytest.raises(PluginError) as raised:
        plugin_manager()
    message = str(raised.value)
    assert f"the brokerkit plugin {ENTRY_POINT!r}" in message
    assert f"({PLUGIN_MODULE} of the package 'pybrokerkit-plugins37-misspelled')" in message
    assert "implements 'brokerkit_register_backend', a hook brokerkit does not have" in message
    assert "did you mean 'brokerkit_register_backends'?" in message
    assert "brokerkit_register_commands" in message  # the valid hooks are listed
    assert message.endswith(f"block it with {BLOCK_ENV}={ENTRY_POINT}")


def test_the_misspelled_plugin_blocked_the_others_load(
    misspelled_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BLOCK_ENV, ENTRY_POINT)
    manager = plugin_manager()
    assert not manager.has_plugin(ENTRY_POINT)
    assert manager.has_plugin("sqlite")  # the example plugin, installed in the venv


def test_connect_says_which_plugin_to_fix(misspelled_plugin: Path) -> None:
    """What a user sees: ``connect("memory://")`` in a process with the plugin."""
    code = (
        "import brokerkit\n"
        "try:\n"
        "    brokerkit.connect('memory://')\n"
        "except brokerkit.PluginError as exc:\n"
        "    print('PluginError:', exc)\n"
    )
    path = [str(misspelled_plugin), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    env.pop(BLOCK_ENV, None)
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"PluginError: the brokerkit plugin {ENTRY_POINT!r}")
    assert "did you mean 'brokerkit_register_backends'?" in completed.stdout
