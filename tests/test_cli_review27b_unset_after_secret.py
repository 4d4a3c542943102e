"""A not-applicable option left unset (``""``, ``none``, ``null``) is taken after a
secret in the query as it is before one: any non-empty value of it that followed a
secret was refused (``...&sentinel_password=abc&replicas=none``), though the same
option before the secret was accepted. A value that sets it is still refused there,
without naming it (its name may be the end of the secret)."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import InvalidOption

# nothing listens on port 1; the brokers below connect lazily and are closed unused
_PUBSUB = "redis+pubsub://127.0.0.1:1/0?sentinel=m&sentinel_password=abc"


@pytest.mark.parametrize("unset", ["none", "null", "NONE", ""])
def test_an_unset_option_after_a_secret_is_taken(unset: str) -> None:
    brokerkit.connect(f"{_PUBSUB}&replicas={unset}").close()
    brokerkit.connect(f"{_PUBSUB}&replicas={unset}&reconnect_timeout=0").close()


def test_an_option_set_after_a_secret_is_still_refused_without_its_name() -> None:
    with pytest.raises(InvalidOption) as refused:
        brokerkit.connect(f"{_PUBSUB}&replicas=2").close()
    assert "replicas" not in str(refused.value) and "abc" not in str(refused.value)
