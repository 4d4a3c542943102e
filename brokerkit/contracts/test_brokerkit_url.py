"""The contract suite against the URLs given on the command line::

    pytest --brokerkit-url "redis+stream://localhost:6379/0?prefix=ci-{uuid}" \\
        --pyargs brokerkit.contracts

and, with ``--brokerkit-async``, the same suite over the asyncio API
(``brokerkit.aio.connect``).

Collected only when ``--brokerkit-url`` is given (see the pytest plugin). In each
URL, ``{uuid}`` becomes a fresh value per test, so a test's brokers share one
namespace that no other test sees; a bare ``memory://`` (private to each
connection) is given a fresh name per test for the same reason.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit._url import BrokerURL
from brokerkit.contracts import BrokerContract


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "brokerkit_url" in metafunc.fixturenames:
        urls = metafunc.config.getoption("brokerkit_url")
        metafunc.parametrize(
            "brokerkit_url",
            urls,
            ids=[str(BrokerURL.parse(u.replace("{uuid}", "x"))) for u in urls],
        )


def namespaced(url: str) -> str:
    """``url`` with ``{uuid}`` filled in with a fresh value (and a bare memory:// named)."""
    fresh = uuid.uuid4().hex[:12]
    if url.rstrip("/") == "memory:":
        return f"memory://contract-{fresh}"
    return url.replace("{uuid}", fresh)


class TestBrokerURL(BrokerContract):
    """Every contract test, against each ``--brokerkit-url``."""

    @pytest.fixture
    def make_broker(self, brokerkit_url: str, request: pytest.FixtureRequest) -> Any:
        url = namespaced(brokerkit_url)
        if request.config.getoption("brokerkit_async"):
            return lambda **options: brokerkit.aio.connect(url, **options)
        return lambda **options: brokerkit.connect(url, **options)
