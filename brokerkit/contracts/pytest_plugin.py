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
