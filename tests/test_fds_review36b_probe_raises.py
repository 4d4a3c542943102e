"""The contract suite's ContractEnv stops the event loop it started for an asyncio
broker factory when its probe broker cannot be named or closed (a plugin's
``describe`` or ``close`` that raises), as it does when the probe cannot be opened:
before, the loop thread and its descriptors were left running (review 36)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import brokerkit.aio
from brokerkit.backends.memory import AsyncMemoryBroker
from brokerkit.contracts._harness import ContractEnv, Timeline


def _loops() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "brokerkit-contract-loop"]


class _Unnamed(Exception):
    pass


def test_a_probe_whose_describe_raises_leaves_no_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def describe(self: Any) -> str:
        raise _Unnamed("a plugin's describe failed")

    monkeypatch.setattr(AsyncMemoryBroker, "describe", describe)
    before = len(_loops())
    with pytest.raises(_Unnamed):
        ContractEnv(lambda **options: brokerkit.aio.connect("memory://", **options), Timeline())
    assert len(_loops()) == before
