"""The contract suite names a backend as its URL does (review 36): one class serves
kombu+memory and kombu+redis, and the suite's skip reasons and messages said
"kombu+memory lacks ..." of a kombu+redis:// broker (the class's first scheme), so
`brokerkit check kombu+redis://...` printed the wrong backend."""

from __future__ import annotations

import functools
import secrets

import pytest

import brokerkit
from brokerkit.contracts._harness import ContractEnv, Timeline

pytest.importorskip("kombu")


def test_the_env_names_a_kombu_redis_broker_kombu_redis() -> None:
    url = f"kombu+redis://127.0.0.1:6379/0?prefix=bkk-r36c-{secrets.token_hex(3)}"
    env = ContractEnv(functools.partial(brokerkit.connect, url), Timeline())
    try:
        assert env.backend_name == "kombu+redis"
        assert env.backend_class.describe() == "kombu+memory"  # the class's first scheme
    finally:
        env.close_all()
