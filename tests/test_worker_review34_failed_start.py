"""``brokerkit worker`` whose worker could not start prints its error alone: before,
a broker that could not be reached (or one that refused a handler) had the command
print the final status line of a run, ``handler=job topic=jobs processed=0 failed=0
...``, above the error, as if the worker had run and stopped. A run that started
keeps its final status line, and no start that failed logs a run or a drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.redis_server import RedisServer

pytest.importorskip("typer")

ROOT = Path(__file__).resolve().parent.parent

#: A hang guard for the child process, never a pace.
GUARD = 60.0

#: A password in the URL, never to be printed.
SECRET = "s3cret-review34"

SYNC_APP = """
import brokerkit
from brokerkit.worker import Fixed

worker = brokerkit.Worker()


@worker.handler("jobs", retry=Fixed(1.0) if DELAYED else None)
def job(body):
    pass
"""

ASYNC_APP = """
import brokerkit.aio

worker = brokerkit.aio.Worker()


@worker.handler("jobs")
async def job(body):
    pass
"""

# Runs on a broker of its own, handles the one message published, and stops itself.
STOPPING_APP = """
import brokerkit

worker = brokerkit.Worker(brokerkit.connect("memory://"))


@worker.handler("jobs")
def job(body):
    worker.stop()


worker.broker.publish("jobs", {"n": 1})
"""

# Subscribed, then says so on stdout, for the test to send a signal.
SIGNALLED_APP = """
import threading

import brokerkit

worker = brokerkit.Worker()


@worker.handler("jobs")
def job(body):
    pass


def ready():
    if worker.wait_ready(60):
        print("ready", flush=True)


threading.Thread(target=ready, daemon=True).start()
"""


def _write(tmp_path: Path, name: str, source: str, *, delayed: bool = False) -> None:
    source = f"DELAYED = {delayed}\n" + textwrap.dedent(source)
    (tmp_path / f"{name}.py").write_text(source)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BROKERKIT_URL", "BROKERKIT_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "brokerkit.cli", "worker", *args]


def _brokerkit_worker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )


def _says_no_run(done: subprocess.CompletedProcess[str]) -> None:
    """Nothing printed says that a run happened: no status line, no log record of a
    run, a drain or a stop; nothing on stdout; the error is the last line."""
    stderr = done.stderr
    assert "handler=" not in stderr and "processed=" not in stderr, stderr
    assert "Traceback" not in stderr, stderr
    for word in ("worker running", "draining", "drained", "stopped"):
        assert word not in stderr, stderr
    assert done.stdout == "", done.stdout
    assert stderr.splitlines()[-1].startswith("brokerkit: error: "), stderr


@pytest.fixture
def unreachable_url(redis_server: RedisServer) -> str:
    """A URL, its password included, of a private server that has been killed: nothing
    answers at its port."""
    redis_server.kill()
    return f"redis+stream://:{SECRET}@127.0.0.1:{redis_server.port}/0?reconnect_timeout=0.2"


@pytest.mark.parametrize(("name", "source"), [("sync_app", SYNC_APP), ("async_app", ASYNC_APP)])
def test_a_broker_not_reached_prints_its_error_alone(
    tmp_path: Path, unreachable_url: str, name: str, source: str
) -> None:
    _write(tmp_path, name, source)
    done = _brokerkit_worker(tmp_path, f"{name}:worker", unreachable_url)
    assert done.returncode == 1, done.stderr
    _says_no_run(done)
    assert "could not connect to Redis at redis+stream://:***@127.0.0.1:" in done.stderr
    assert "check the host, the port and that the server runs" in done.stderr  # the hint
    assert SECRET not in done.stderr + done.stdout


def test_a_broker_of_the_workers_own_not_reached_prints_its_error_alone(
    tmp_path: Path, unreachable_url: str
) -> None:
    source = SYNC_APP.replace(
        "brokerkit.Worker()", f"brokerkit.Worker(brokerkit.connect({unreachable_url!r}))"
    )
    _write(tmp_path, "own_broker_app", source)
    done = _brokerkit_worker(tmp_path, "own_broker_app:worker")
    assert done.returncode == 1, done.stderr
    _says_no_run(done)
    assert "could not connect to Redis" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_a_handler_the_broker_refuses_prints_the_refusal_alone(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    _write(tmp_path, "delayed_app", SYNC_APP, delayed=True)
    url = redis_server.url("redis+pubsub").replace("://", f"://:{SECRET}@", 1)
    done = _brokerkit_worker(tmp_path, "delayed_app:worker", url)
    assert done.returncode == 1, done.stderr
    _says_no_run(done)
    assert "cannot retry handler job after a delay" in done.stderr
    assert "leave retry out" in done.stderr  # the hint
    assert SECRET not in done.stderr + done.stdout


def test_a_module_that_does_not_import_is_a_usage_error_with_no_run(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("import no_such_module_review34\n")
    done = _brokerkit_worker(tmp_path, "broken_app:worker", "memory://")
    assert done.returncode == 2, done.stderr
    _says_no_run(done)
    assert "cannot import 'broken_app'" in done.stderr


@pytest.mark.parametrize(
    "option", [("--grace", "-1"), ("--interval", "0"), ("--concurrency", "100000")]
)
def test_an_invalid_option_is_a_usage_error_with_no_run(
    tmp_path: Path, option: tuple[str, str]
) -> None:
    _write(tmp_path, "option_app", SYNC_APP)
    done = _brokerkit_worker(tmp_path, "option_app:worker", "memory://", *option)
    assert done.returncode == 2, done.stderr
    _says_no_run(done)
    assert f"Invalid value for {option[0]}" in done.stderr


def test_a_run_that_stops_itself_keeps_its_final_status_line(tmp_path: Path) -> None:
    _write(tmp_path, "stopping_app", STOPPING_APP)
    done = _brokerkit_worker(tmp_path, "stopping_app:worker")
    assert done.returncode == 0, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("handler=job topic=jobs processed=1 failed=0 "), done.stderr
    assert "brokerkit: INFO brokerkit.worker: worker stopped (drained)" in done.stderr


def test_a_run_stopped_by_a_signal_keeps_its_final_status_line(tmp_path: Path) -> None:
    _write(tmp_path, "signalled_app", SIGNALLED_APP)
    child = subprocess.Popen(
        _command("signalled_app:worker", "memory://"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(GUARD)
    assert child.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.splitlines()[-1].startswith("handler=job topic=jobs processed=0 "), stderr
