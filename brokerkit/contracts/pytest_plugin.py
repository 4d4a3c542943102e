"""pytest plugin for the contract suite: options and markers only, nothing heavy.

Registered through the ``pytest11`` entry point, so it is active wherever brokerkit
is installed. It imports neither hypothesis nor any backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Selects the suite's hypothesis settings profile: ``default``, ``thorough`` or ``smoke``.
PROFILE_ENV = "BROKERKIT_CONTRACT_PROFILE"
#: The module that runs the suite against the URLs given with ``--brokerkit-url``.
URL_MODULE = Path(__file__).with_name("test_brokerkit_url.py")

pytest.register_assert_rewrite("brokerkit.contracts")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("brokerkit", "brokerkit contract suite")
    group.addoption(
        "--brokerkit-url",
        action="append",
        default=[],
        metavar="URL",
        help="run the brokerkit contract suite against the broker at URL (repeatable); "
        "with --pyargs brokerkit.contracts",
    )
    group.addoption(
        "--brokerkit-async",
        action="store_true",
        default=False,
        help="run the --brokerkit-url contract suite over the asyncio API (brokerkit.aio.connect)",
    )
    group.addoption(
        "--brokerkit-profile",
        choices=("default", "thorough", "smoke"),
        default=None,
        help=f"how hard the contract suite tries (default: ${PROFILE_ENV}, else 'default')",
    )


class ContractHooks:
    """The hook a backend's plugin implements to clean up after ``--brokerkit-url``."""

    @pytest.hookspec(firstresult=True)
    def pytest_brokerkit_cleanup(self, url: str, namespace: str) -> int | None:
        """Remove what one contract test left on the server at ``url``, a
        ``--brokerkit-url`` whose ``{uuid}`` became ``namespace`` (a value made for
        that test alone), after the test closed its brokers.

        Return how many things were removed, or None when ``url`` is not your backend's
        (the next implementation is asked). Remove only what lies under ``namespace``:
        anything else on the server may be someone else's.
        """


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(ContractHooks)


@pytest.hookimpl(trylast=True)
def pytest_brokerkit_cleanup(url: str, namespace: str) -> int | None:
    """The shipped Redis backends: every key under the URL's ``prefix``, when the
    ``{uuid}`` made that prefix the test's own (a SCAN of ``<prefix>:*``, then UNLINK,
    on every master of a cluster)."""
    from brokerkit._url import BrokerURL

    parsed = BrokerURL.parse(url)
    if parsed.family not in ("redis", "rediss"):
        return None
    prefix = parsed.query.get("prefix", "")
    if namespace not in prefix:
        return 0  # not the test's own namespace: nothing is safe to remove
    from brokerkit.backends.redis._unlink import unlink_prefixed

    return unlink_prefixed(parsed, prefix + ":")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "brokerkit_requires(capability): the contract test needs these brokerkit "
        "capabilities; it is skipped, naming the missing ones, on a backend without them",
    )
    profile = config.getoption("brokerkit_profile", None)
    if profile:
        # The suite reads the profile when its modules are imported, during collection
        # (and xdist workers inherit the environment).
        os.environ[PROFILE_ENV] = profile


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect the URL-driven contract module only when ``--brokerkit-url`` is given."""
    if collection_path == URL_MODULE and not config.getoption("brokerkit_url", None):
        return True
    return None
