"""Plugins registered or unregistered from several threads at once: the relay's last
refresh reflects every registration, so that each plugin registered is called from the
next message on, and none unregistered is called still.

The interleaving that lost a registration is forced: the refresh after one thread's
registration is held after it read the plugins, while another thread registers; that
other thread's registration must wait for the first refresh to end (before the fix it
ran, refreshed, and was then overwritten by the first, stale, refresh)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pluggy
import pytest

import brokerkit
import brokerkit._hooks as hooks
from brokerkit._hooks import RELAY


class Acks:
    """Counts the deliveries acked."""

    def __init__(self) -> None:
        self.acked = 0

    @brokerkit.hookimpl
    def brokerkit_on_ack(self, deliveries: Any) -> None:
        self.acked += len(deliveries)


class _WatchedLock:
    """An RLock that tells when a thread other than ``owner`` comes to take it."""

    def __init__(self, owner: threading.Thread, other_waits: threading.Event) -> None:
        self._lock = threading.RLock()
        self._owner = owner
        self._other_waits = other_waits

    def __enter__(self) -> bool:
        if threading.current_thread() is not self._owner:
            self._other_waits.set()
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)


@pytest.fixture
def manager() -> Iterator[pluggy.PluginManager]:
    found = brokerkit.get_plugin_manager()
    before = set(found.get_plugins())
    try:
        yield found
    finally:
        for plugin in set(found.get_plugins()) - before:
            found.unregister(plugin)


def _interleaved(
    monkeypatch: pytest.MonkeyPatch,
    first: Callable[[], object],
    second: Callable[[], object],
) -> None:
    """Run ``first`` here; once its refresh has read the ``brokerkit_on_ack``
    implementations, run ``second`` in another thread and go on only when that one is
    done or waits for the relay's registration lock."""
    main = threading.current_thread()
    go = threading.Event()
    monkeypatch.setattr(RELAY, "_registering", _WatchedLock(main, go), raising=False)
    real_impls = hooks.impls_of
    held = []
    errors: list[BaseException] = []

    def run_second() -> None:
        try:
            second()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            go.set()

    def impls(manager: pluggy.PluginManager, name: str) -> tuple[Any, ...]:
        found = real_impls(manager, name)
        if name == "brokerkit_on_ack" and threading.current_thread() is main and not held:
            other = threading.Thread(target=run_second)
            held.append(other)
            other.start()
            assert go.wait(20), "the other registration neither ended nor waited"
        return found

    monkeypatch.setattr(hooks, "impls_of", impls)
    first()
    monkeypatch.setattr(hooks, "impls_of", real_impls)
    assert held, "the refresh never read brokerkit_on_ack"
    held[0].join(20)
    assert not held[0].is_alive()
    assert not errors, errors


def _acked_once(plugins: list[Acks]) -> list[int]:
    """How many acks each of ``plugins`` saw of one delivery acked on memory://."""
    with brokerkit.connect(f"memory://obs26-race-{uuid.uuid4().hex}") as broker:
        broker.publish("t", 1)
        with broker.subscribe("t") as subscription:
            delivery = subscription.receive(timeout=5)
            assert delivery is not None
            delivery.ack()
    return [plugin.acked for plugin in plugins]


def test_two_plugins_registered_at_once_are_both_called(
    manager: pluggy.PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = Acks(), Acks()
    _interleaved(monkeypatch, lambda: manager.register(first), lambda: manager.register(second))
    assert _acked_once([first, second]) == [1, 1]


def test_two_plugins_unregistered_at_once_are_neither_called(
    manager: pluggy.PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, kept = Acks(), Acks(), Acks()
    for plugin in (kept, first, second):
        manager.register(plugin)
    _interleaved(monkeypatch, lambda: manager.unregister(first), lambda: manager.unregister(second))
    assert _acked_once([first, second, kept]) == [0, 0, 1]
