"""``brokerkit check -k EXPR`` with an expression pytest cannot parse is a usage error,
exit status 2, naming -k and what pytest said (review 29 of the command line). Before,
it was "the contract suite did not run (pytest exit status 4)", exit status 1, as if
the broker had failed."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("typer")
pytest.importorskip("brokerkit.contracts")


def test_a_k_expression_pytest_refuses_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "brokerkit.cli", "check", "memory://", "-k", "((("],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("brokerkit: error: Invalid value for -k: pytest refused '((('")
    assert "Wrong expression" in error and "(see 'brokerkit check -h')" in error
    assert "Traceback" not in done.stderr
