"""``brokerkit check`` deletes what it made on every backend it can (review 36 of the
command line). Only a Redis URL got a prefix of its own, and nothing else was deleted:
``check "kombu+amqp://...?prefix=audit36-619-chk" -k dead_letter`` left 67 queues and
100 exchanges under that prefix, on NATS a stream with 80 messages and 70 consumers,
and without ``prefix=`` the run landed in the application's own ``brokerkit`` names.
Now every backend with a ``prefix`` option runs under ``brokerkit-check-<run>`` (each
test under ``brokerkit-check-<run>-<test>``), and what each test's brokers made is
deleted as the test ends: kombu's queues and exchanges, the test's NATS stream. A
backend where brokerkit deletes nothing says so on stderr."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

pytest.importorskip("typer")
pytest.importorskip("brokerkit.contracts")

from brokerkit.cli import _scratch
from brokerkit.cli._app import run
from tests.conftest import RedisTarget
from tests.kombu_rabbitmq import delete_names, rabbitmq

__all__ = ["rabbitmq"]  # fixture

#: Tests that declare queues for groups and a dead-letter topic's.
SELECTION = ["-k", "nack_without_requeue_dead_letters_at_once or groups_do_not_affect"]


@pytest.fixture
def run_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """The prefix ``check`` gives its run (fixed, to look for what it left)."""
    prefix = f"brokerkit-check-h36{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(_scratch, "scratch_prefix", lambda command: prefix)
    return prefix


@pytest.fixture
def url_prefix() -> str:
    """The ``prefix=`` of the URL given to ``check``, which the run must not use."""
    return f"h36chk-{uuid.uuid4().hex[:8]}"


def _checked(
    url: str, capsys: pytest.CaptureFixture[str], selection: list[str] = SELECTION
) -> None:
    """Run ``brokerkit check`` on ``url``; it passes, and says it left nothing."""
    status = run(["check", url, *selection])
    out, err = capsys.readouterr()
    assert status == 0, err
    passed = re.search(r"(\d+) passed", out)
    assert passed is not None and int(passed[1]) >= 2, out  # (so something was made)
    assert "check left" not in err, err


def _rabbitmq_names(kind: str, *prefixes: str) -> list[str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl is needed to list the queues and exchanges left")
    listed = subprocess.run(
        [ctl, "-q", f"list_{kind}", "name"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    return sorted(n for n in listed if n.startswith(prefixes))


def test_check_on_rabbitmq_leaves_no_queue_or_exchange(
    rabbitmq: str, run_prefix: str, url_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        _checked(f"{rabbitmq}?prefix={url_prefix}", capsys)
        assert _rabbitmq_names("queues", run_prefix, url_prefix) == []
        assert _rabbitmq_names("exchanges", run_prefix, url_prefix) == []
    finally:
        delete_names(
            set(_rabbitmq_names("exchanges", run_prefix, url_prefix)),
            set(_rabbitmq_names("queues", run_prefix, url_prefix)),
        )


def _streams(url: str, *prefixes: str, delete: bool = False) -> list[str]:
    import nats

    async def look() -> list[str]:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            names = sorted(
                info.config.name
                for info in await js.streams_info()
                if (info.config.name or "").startswith(prefixes)
            )
            for name in names if delete else []:
                await js.delete_stream(name)
            return names
        finally:
            await client.close()

    return asyncio.run(look())


def test_check_on_nats_leaves_no_stream(
    nats_url: str, run_prefix: str, url_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        _checked(f"{nats_url}?prefix={url_prefix}", capsys)
        assert _streams(nats_url, run_prefix, url_prefix) == []
    finally:
        _streams(nats_url, run_prefix, url_prefix, delete=True)


def test_check_on_kombu_redis_leaves_no_key(
    redis_target: RedisTarget, run_prefix: str, url_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("kombu")
    client = redis_target.client()

    def keys() -> list[bytes]:
        found = [k for p in (run_prefix, url_prefix) for k in client.scan_iter(f"*{p}*")]
        return sorted(found)

    try:
        url = redis_target.url("kombu+redis", prefix=url_prefix)
        _checked(url, capsys, ["-k", "fanout or competing"])  # (no ACK, no dead letters)
        assert keys() == []
    finally:
        for key in keys():
            client.unlink(key)
        client.close()


def test_a_test_that_never_said_it_deleted_is_named() -> None:
    from brokerkit.cli._check import _left

    events = "\n".join(
        [
            '{"event": "made", "prefix": "p-1"}',
            '{"event": "left", "what": "queue p-1|t|g (refused)"}',
            '{"event": "cleaned", "prefix": "p-1"}',
            '{"event": "made", "prefix": "p-2"}',
            '{"event": "te',  # cut short by a kill
        ]
    )
    assert _left(events) == [
        "queue p-1|t|g (refused)",
        "(what the test under the prefix p-2 made: the check ended before it was deleted)",
    ]


def test_a_backend_brokerkit_deletes_nothing_of_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("brokerkit_example")
    url = f"sqlite:///{tmp_path}/check.db"
    assert run(["check", url, "-k", "test_no_loss"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "check left 1 thing on sqlite:" in err, err
    assert (
        "(what the run made (its topics bkc.*): brokerkit knows no way to delete it on sqlite)"
        in err
    )


def test_a_ctrl_c_during_the_deletion_waits_for_its_end() -> None:
    """The run's stop sends the child SIGINT, which may come as a test's deletion is
    under way: it was cut short there, leaving the rest of the test's queues."""
    import signal

    from brokerkit.cli._check_cleanup import deferring_interrupts

    done: list[str] = []

    def delete() -> None:
        with deferring_interrupts():
            signal.raise_signal(signal.SIGINT)
            done.append("deleted the rest")

    with pytest.raises(KeyboardInterrupt):
        delete()
    assert done == ["deleted the rest"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
