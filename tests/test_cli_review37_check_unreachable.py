"""``brokerkit check`` stops at once on a broker it cannot use at all (review 37).

``check "redis+stream://user:WRONG@..."`` ran the whole suite (266 s, 86 failures,
each "refused the credentials"), then said it could not remove the run's keys. Now
it connects once first: a broker that cannot be reached, or that refuses the
credentials, ends the command with that error (exit status 1) before any test runs,
and nothing is said of keys (none were made). The selection (``-k``) only bounds the
run of a version without the fix.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("typer")
pytest.importorskip("brokerkit.contracts")

from brokerkit.cli._app import run
from tests.redis_server import RedisServer

PASSWORD = "right-password-37"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private server with a password user (the default user is left as it is)."""
    user = ("--user", "bk-check", "on", f">{PASSWORD}", "~*", "&*", "+@all")
    with RedisServer(config=user) as started:
        yield started


def _stopped(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    status = run(["check", url, "-k", "no_loss or fanout"])
    out, err = capsys.readouterr()
    assert status == 1, (out, err)
    assert "ran no test" in err, err
    assert "passed" not in out and "FAIL" not in out, out
    assert "remove" not in err and "check left" not in err, err
    return err


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list", "redis+pubsub"])
def test_check_stops_at_once_on_refused_credentials(
    server: RedisServer, capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    err = _stopped(f"{scheme}://bk-check:WRONG@127.0.0.1:{server.port}/0", capsys)
    assert "refused the credentials" in err, err
    assert "WRONG" not in err  # (the password, masked)


def test_check_stops_at_once_where_nothing_answers(
    server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis+stream://bk-check:{PASSWORD}@127.0.0.1:{server.port}/0"
    server.kill()
    err = _stopped(url, capsys)
    assert "could not connect" in err, err
    assert PASSWORD not in err
