"""pytest plugin for the contract suite: options and markers only, nothing heavy."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("brokerkit", "brokerkit contract suite")
    group.addoption(
        "--brokerkit-url",
        action="append",
        default=[],
        metavar="URL",
        help="run the brokerkit contract suite against the broker at URL (repeatable)",
    )
