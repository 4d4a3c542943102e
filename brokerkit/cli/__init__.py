"""The ``brokerkit`` command."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("the brokerkit command is not built yet")
