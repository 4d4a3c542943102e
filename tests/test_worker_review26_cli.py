"""The ``brokerkit worker`` command's log (twenty-sixth review of the worker): after a
signal its exit status is 128 + the signal whether the drain finished or not, and the
log says which (``worker stopped (drained)``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A hang guard for the child process, never a pace.
GUARD = 60.0

APP = textwrap.dedent(
    """
    import threading

    import brokerkit

    worker = brokerkit.Worker()
    retried = threading.Event()


    @worker.handler("jobs")
    def job(body, delivery):
        if delivery.attempt == 1:
            raise RuntimeError("failed once")
        retried.set()


    def ready():
        if worker.wait_ready(60):
            worker.broker.publish("jobs", "fails once")
        if retried.wait(60):
            print("ready", flush=True)


    threading.Thread(target=ready, daemon=True).start()
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_after_a_signal_the_commands_log_says_the_worker_drained(
    tmp_path: Path, signum: int
) -> None:
    """Its INFO lines about itself are shown (running, draining, stopped), and the
    handler's failure, retried (a WARNING since review 37), but no other INFO line."""
    (tmp_path / "idle_app.py").write_text(APP)
    child = subprocess.Popen(
        [sys.executable, "-m", "brokerkit.cli", "worker", "idle_app:worker", "memory://"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # subscribed, one failure retried
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(GUARD)
    assert child.returncode == 128 + signum, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("brokerkit: ")]
    failure = "brokerkit: WARNING brokerkit.worker: handler job failed on "
    # wherever it falls: wait_ready wakes (and the app publishes) before the worker
    # logs "worker running", so the failure may come before that line
    (failed,) = [line for line in lines if line.startswith(failure)]
    assert failed.endswith(
        "(topic 'jobs', attempt 1), retried in 0 s: RuntimeError: failed once"
    ), stderr
    lines.remove(failed)
    assert lines == [
        "brokerkit: INFO brokerkit.worker: worker running 1 handler(s) on memory://",
        f"brokerkit: INFO brokerkit.worker: worker got signal {signum}: draining",
        "brokerkit: INFO brokerkit.worker: worker stopped (drained)",
    ], stderr


def test_a_worker_module_that_configures_logging_gets_no_line_it_did_not_ask_for() -> None:
    """The worker's logger is lowered to INFO for the command's handler only: once the
    program configures logging (at WARNING here), its handlers get no INFO line."""
    script = textwrap.dedent(
        """
        import logging
        from brokerkit.cli._app import _library_logging

        worker_log = logging.getLogger("brokerkit.worker")
        with _library_logging(["worker", "app:worker"], False):
            worker_log.info("worker running 1 handler(s) on memory://")  # before: shown
            logging.basicConfig(format="APP %(name)s: %(message)s")  # the import
            worker_log.info("worker stopped (drained)")  # the program's level: not shown
            worker_log.warning("a handler warned")
        assert worker_log.level == logging.NOTSET and not worker_log.filters
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stderr.splitlines() == [
        "brokerkit: INFO brokerkit.worker: worker running 1 handler(s) on memory://",
        "APP brokerkit.worker: a handler warned",
    ]
