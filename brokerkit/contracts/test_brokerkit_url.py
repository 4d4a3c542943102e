"""The contract suite against the URLs given on the command line::

    pytest --brokerkit-url "redis+stream://localhost:6379/0?prefix=ci-{uuid}" \\
        --pyargs brokerkit.contracts

and, with ``--brokerkit-async``, the same suite over the asyncio API
(``brokerkit.aio.connect``).

Collected only when ``--brokerkit-url`` is given (see the pytest plugin). In each
URL, ``{uuid}`` becomes a fresh value per test, so a test's brokers share one
namespace that no other test sees; a bare ``memory://`` (private to each
connection) is given a fresh name per test for the same reason.

When a test ends, the ``pytest_brokerkit_cleanup`` hook removes what it left under
that fresh value: on the shipped Redis backends, every key under the URL's ``prefix``
when the prefix holds ``{uuid}``; on any other backend, what its plugin's
implementation of the hook removes (nothing, without one).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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


def namespaced(url: str, fresh: str | None = None) -> str:
    """``url`` with ``{uuid}`` filled in with ``fresh`` (default: a fresh value), and a
    bare memory:// named after it."""
    fresh = fresh or uuid.uuid4().hex[:12]
    if url.rstrip("/") == "memory:":
        return f"memory://contract-{fresh}"
    return url.replace("{uuid}", fresh)


class TestBrokerURL(BrokerContract):
    """Every contract test, against each ``--brokerkit-url``."""

    @pytest.fixture
    def make_broker(self, brokerkit_url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
        """The URL's brokers; once the test has closed them (the ``contract`` fixture,
        which needs this one, ends first), what it left under its fresh namespace is
        removed through the ``pytest_brokerkit_cleanup`` hook."""
        fresh = uuid.uuid4().hex[:12]
        url = namespaced(brokerkit_url, fresh)
        if request.config.getoption("brokerkit_async"):
            yield lambda **options: brokerkit.aio.connect(url, **options)
        else:
            yield lambda **options: brokerkit.connect(url, **options)
        if "{uuid}" in brokerkit_url:
            request.config.hook.pytest_brokerkit_cleanup(url=url, namespace=fresh)
