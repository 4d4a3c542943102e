"""The brokerkit contract suite, run against the SQLite backend: the whole test file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import brokerkit
from brokerkit.contracts import BrokerContract


class TestSQLiteBroker(BrokerContract):
    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Any:
        url = f"sqlite:///{tmp_path}/queue.db"  # a fresh file per test: its own namespace

        def make(**options: Any) -> brokerkit.Broker:
            return brokerkit.connect(url, **options)

        return make
