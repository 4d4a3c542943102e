"""A worker's refusals name the backend by its URL's scheme: one class serves
kombu+memory and kombu+redis, and a kombu+redis:// worker was told that
"kombu+memory" could not delay its retries (the class's first scheme)."""

from __future__ import annotations

import secrets

import pytest

import brokerkit
from brokerkit.exceptions import Unsupported
from brokerkit.worker import Exponential, Worker

pytest.importorskip("kombu")


def _handle(message: brokerkit.Message) -> None:
    """Never called: the worker refuses it first."""


def test_a_handler_registered_on_a_kombu_redis_worker_is_refused_as_kombu_redis() -> None:
    prefix = f"bkk-review36-{secrets.token_hex(3)}"
    with brokerkit.connect(f"kombu+redis://127.0.0.1:6379/0?prefix={prefix}") as broker:
        worker = Worker(broker)
        with pytest.raises(Unsupported) as refused:
            worker.handler("orders", retry=Exponential(1.0))(_handle)
    assert "kombu+redis" in str(refused.value)
    assert "kombu+memory" not in str(refused.value)


def test_a_worker_run_refuses_a_handler_as_its_brokers_scheme() -> None:
    prefix = f"bkk-review36-{secrets.token_hex(3)}"
    worker = Worker()
    worker.handler("orders", retry=Exponential(1.0))(_handle)
    with brokerkit.connect(f"kombu+redis://127.0.0.1:6379/0?prefix={prefix}") as broker:
        worker.broker = broker
        with pytest.raises(Unsupported) as refused:
            worker.run()
    assert "kombu+redis" in str(refused.value)
    assert "kombu+memory" not in str(refused.value)
