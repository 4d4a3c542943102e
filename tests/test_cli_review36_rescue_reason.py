"""``brokerkit rescue`` on a backend without a rescue step says why from what the
backend keeps (review 36 of the command line). On ``kombu+redis://`` it said "it keeps
no deliveries to come back (no ACK: a message goes to whoever listens when it is
published)", the reason of pub/sub, where kombu's queues keep every message until a
consumer fetches it (docs/backends/kombu.md); and it named the backend
``kombu+memory``, the class's first scheme, not the URL's."""

from __future__ import annotations

import pytest

pytest.importorskip("typer")

from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV

#: A URL no server answers at: the refusal comes before connecting.
NOWHERE = "127.0.0.1:1"


def _refusal(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(["rescue", url, "h36-rescue-reason"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0, error
    return error


@pytest.mark.parametrize("scheme", ["kombu+redis", "kombu+memory"])
def test_persistent_queues_without_ack_say_a_message_leaves_its_queue_when_fetched(
    scheme: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("kombu")
    monkeypatch.delenv(URL_ENV, raising=False)
    url = f"{scheme}://{NOWHERE}/0" if scheme == "kombu+redis" else f"{scheme}://"
    error = _refusal(url, capsys)
    assert error.startswith(f"brokerkit: error: {scheme} has no public rescue step"), error
    assert "whoever listens" not in error, error
    assert "waits in its queue" in error and "leaves it when a consumer fetches it" in error


@pytest.mark.parametrize(
    "url", ["nats://127.0.0.1:1", "kombu+amqp://guest:guest@127.0.0.1:1//", "memory://"]
)
def test_backends_with_ack_say_an_unsettled_delivery_comes_back_by_itself(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    error = _refusal(url, capsys)
    scheme = url.split("://")[0]
    assert error.startswith(f"brokerkit: error: {scheme} has no public rescue step"), error
    assert "comes back by itself once its visibility timeout runs out" in error, error


@pytest.mark.parametrize("url", ["redis+pubsub://127.0.0.1:1/0", "nats+core://127.0.0.1:1"])
def test_pubsub_says_it_keeps_nothing(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    error = _refusal(url, capsys)
    assert "a message goes to whoever listens when it is published" in error, error
