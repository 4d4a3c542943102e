"""``brokerkit worker --concurrency`` and ``brokerkit consume --prefetch`` past their
most are usage errors (status 2) naming the option and what is valid, as every other
option out of range is (docs/cli.md: "2 when ... an option is out of range"). Before,
``worker -c 20000`` (a plain handler's slots are threads: at most 10,000) and
``consume --prefetch 100000000`` (at most 1,000,000) ended with status 1 and the
library's "concurrency must be ..." / "prefetch must be ...", which named no option,
``consume`` only after connecting to the broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("typer")

_ROOT = Path(__file__).resolve().parents[1]
_CMD = "import sys; from brokerkit.cli._app import run; sys.exit(run(sys.argv[1:]))"

_MODULE = """
import brokerkit
import brokerkit.aio

worker = brokerkit.Worker(brokerkit.connect("memory://"))
tasks = brokerkit.aio.Worker()


@worker.handler("jobs")
def job(body):
    pass


@tasks.handler("jobs")
async def task(body):
    pass
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "slots_worker.py").write_text(_MODULE)
    env = {k: v for k, v in os.environ.items() if k not in ("BROKERKIT_URL", "BROKERKIT_DEBUG")}
    env["PYTHONPATH"] = str(_ROOT)
    return subprocess.run(
        [sys.executable, "-c", _CMD, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("target", "value", "most"),
    [("slots_worker:worker", "20000", "10,000"), ("slots_worker:tasks", "1000001", "1,000,000")],
    ids=["threads", "tasks"],
)
def test_a_concurrency_past_the_most_is_a_usage_error(
    tmp_path: Path, target: str, value: str, most: str
) -> None:
    done = _run(tmp_path, "worker", target, "memory://", "--concurrency", value)
    assert done.returncode == 2, done.stderr
    assert "--concurrency" in done.stderr, done.stderr
    assert f"1 to {most}, got {value}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_prefetch_past_the_most_is_a_usage_error(tmp_path: Path) -> None:
    done = _run(tmp_path, "consume", "memory://", "jobs", "--prefetch", "1000001", "-t", "0")
    assert done.returncode == 2, done.stderr
    assert "--prefetch" in done.stderr, done.stderr
    assert "1 to 1,000,000, got 1000001" in done.stderr, done.stderr
    assert "consuming" not in done.stderr, done.stderr  # refused before connecting


@pytest.mark.parametrize("value", ["1", "1000000"])
def test_a_prefetch_in_range_is_taken(tmp_path: Path, value: str) -> None:
    done = _run(tmp_path, "consume", "memory://", "jobs", "--prefetch", value, "-t", "0")
    assert done.returncode == 0, done.stderr
    assert "received 0 messages" in done.stderr, done.stderr
