"""``brokerkit.connect()`` with no URL reads ``BROKERKIT_URL``: a value that is no URL
(an empty one, as ``BROKERKIT_URL=`` in a compose file or an unset shell variable
expanded leaves it) is refused with an error that names the variable, so that the
caller, who passed no URL at all, learns where the bad one came from; its password
stays masked."""

from __future__ import annotations

import asyncio

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidURL


def test_an_empty_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERKIT_URL", "")
    with pytest.raises(InvalidURL, match="BROKERKIT_URL is set but empty"):
        brokerkit.connect()


def test_an_empty_variable_is_refused_by_the_asyncio_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROKERKIT_URL", "  ")

    async def main() -> None:
        async with brokerkit.aio.connect():
            pass

    with pytest.raises(InvalidURL, match="BROKERKIT_URL is set but empty"):
        asyncio.run(main())


def test_a_malformed_variable_is_refused_naming_it_password_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROKERKIT_URL", "redis+stream:/:s3cret-pw@localhost/0")
    with pytest.raises(InvalidURL, match="from BROKERKIT_URL") as caught:
        brokerkit.connect()
    assert "s3cret-pw" not in str(caught.value)


def test_a_url_given_is_refused_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERKIT_URL", "memory://elsewhere")
    with pytest.raises(InvalidURL) as caught:
        brokerkit.connect("")
    assert "BROKERKIT_URL" not in str(caught.value)


def test_the_variable_unset_still_means_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROKERKIT_URL", raising=False)
    with brokerkit.connect() as broker:
        assert broker.url.scheme == "memory"
