"""The command line names a backend by its URL's scheme (review 36): ``consume
--no-ack`` and ``topics`` on ``kombu+redis://`` said "kombu+memory cannot ...", the
class's first scheme, since they asked the broker's class rather than the broker."""

from __future__ import annotations

import secrets

import pytest

pytest.importorskip("typer")
pytest.importorskip("kombu")

from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV


def _url() -> str:
    return f"kombu+redis://127.0.0.1:6379/0?prefix=bkk-r36b-{secrets.token_hex(3)}"


@pytest.mark.parametrize(
    "arguments",
    [["consume", "{url}", "r36b-topic", "--no-ack"], ["topics", "{url}"]],
    ids=["consume --no-ack", "topics"],
)
def test_a_kombu_redis_refusal_names_kombu_redis(
    arguments: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    url = _url()
    assert run([a.format(url=url) for a in arguments]) == 1
    error = capsys.readouterr().err
    assert "kombu+redis cannot" in error, error
    assert "kombu+memory" not in error, error
