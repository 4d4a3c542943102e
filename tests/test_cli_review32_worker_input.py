"""``brokerkit worker`` refuses an ``--interval`` out of range and a ``--grace`` that
is no number of seconds as usage errors (status 2) naming what is valid, before it
imports the worker. Before, ``--interval inf`` (or ``1e12``) ran the worker with its
status thread dead of "OverflowError: timestamp out of range for platform time_t", a
raw traceback on stderr and no status line until the end; ``--interval nan`` and
``--grace nan`` were refused with typer's "Input should be greater than or equal to
0.1" (0), which does not name the value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("typer")

_ROOT = Path(__file__).resolve().parents[1]
_CMD = "import sys; from brokerkit.cli._app import run; sys.exit(run(sys.argv[1:]))"

# a worker that ends as soon as it runs (drained)
_MODULE = """
import brokerkit


class W(brokerkit.Worker):
    def run(self, *args, **kwargs):
        self.drained = True


worker = W(brokerkit.connect("memory://"))
"""


def _worker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "quick_worker.py").write_text(_MODULE)
    env = {k: v for k, v in os.environ.items() if k not in ("BROKERKIT_URL", "BROKERKIT_DEBUG")}
    env["PYTHONPATH"] = str(_ROOT)
    return subprocess.run(
        [sys.executable, "-c", _CMD, "worker", "quick_worker:worker", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("value", ["inf", "1e12", "nan", "0.05"])
def test_an_interval_out_of_range_is_a_usage_error(tmp_path: Path, value: str) -> None:
    done = _worker(tmp_path, "--interval", value)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "--interval" in done.stderr and "0.1 to 31536000" in done.stderr, done.stderr


@pytest.mark.parametrize("value", ["nan", "-1"])
def test_a_grace_that_is_no_number_of_seconds_is_a_usage_error(tmp_path: Path, value: str) -> None:
    done = _worker(tmp_path, "--grace", value)
    assert done.returncode == 2, done.stderr
    assert "--grace" in done.stderr and "0 or more" in done.stderr, done.stderr
    assert f"got {float(value)!r}" in done.stderr, done.stderr


def test_good_values_run_the_worker(tmp_path: Path) -> None:
    done = _worker(tmp_path, "--interval", "3600", "--grace", "inf")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
