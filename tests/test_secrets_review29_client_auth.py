"""``client_auth`` says whether a TLS server asks for a client certificate
(``client_auth=required``, as ``tls_client_auth`` does): how to authenticate, not
with what. It was taken for a secret name, so ``str()`` of a URL masked its value
and every option written after it."""

from __future__ import annotations

import pytest

from brokerkit._secret_options import is_secret
from brokerkit._url import BrokerURL


@pytest.mark.parametrize("name", ["client_auth", "clientAuth", "CLIENT-AUTH"])
def test_client_auth_is_no_secret(name: str) -> None:
    assert not is_secret(name)


def test_a_url_with_client_auth_shows_it_and_what_follows() -> None:
    shown = str(BrokerURL.parse("redis+list://h:6379/0?client_auth=required&prefetch=5"))
    assert "client_auth=required" in shown
    assert "prefetch=5" in shown


@pytest.mark.parametrize("name", ["client_auth_token", "client_auth_key"])
def test_a_credential_named_after_client_auth_stays_a_secret(name: str) -> None:
    assert is_secret(name)
