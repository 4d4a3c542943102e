"""examples/fastapi_app.py, as docs/asyncio.md shows it, runs: orders published from
request handlers reach the background consumer; shutdown leaves nothing in flight."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

import brokerkit

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_orders_published_by_handlers_reach_the_background_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"memory://fastapi-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BROKERKIT_URL", url)
    example = load_example()
    with brokerkit.connect(url) as observer:  # keeps the named memory broker alive
        with TestClient(example.app) as client:
            for order in range(1, 6):
                assert client.post(f"/orders/{order}").status_code == 200
            deadline = time.monotonic() + 10
            while client.get("/receipts").json()["sent"] != [1, 2, 3, 4, 5]:
                assert time.monotonic() < deadline, client.get("/receipts").json()
                time.sleep(0.01)
            # Published while the consumer runs; then the app shuts down.
            for order in range(6, 9):
                client.post(f"/orders/{order}")
        info = observer.inspect(example.TOPIC)
        assert info.in_flight == 0
        consumed = set(range(1, 9)) - {
            d.body["orderId"] for d in observer.consume(example.TOPIC, group="email", timeout=0)
        }
        assert consumed == set(client.app.state.sent)  # nothing lost, nothing twice


def test_a_consumer_that_crashes_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"memory://fastapi-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BROKERKIT_URL", url)
    example = load_example()
    with (
        brokerkit.connect(url) as other,
        TestClient(example.app),
        caplog.at_level(logging.ERROR, logger=example.__name__),
    ):
        other.publish(example.TOPIC, {"no orderId": 1})  # a KeyError in the consumer
        deadline = time.monotonic() + 10
        while not any("consumer stopped" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the crash was not logged"
            time.sleep(0.01)
    failure = next(r for r in caplog.records if "consumer stopped" in r.getMessage())
    assert failure.exc_info is not None and failure.exc_info[0] is KeyError
