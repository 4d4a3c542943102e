"""Credential-carrying option names a NATS, AMQP or Redis user would write (``nkey_seed=``,
``creds=``, ``api_key=``, ``private_key=``, ``auth=``...) are secrets, as ``password=``
and ``token=`` are: their value (and what follows it) is masked by ``str()`` of the URL,
by every error quoting it and by the CLI, and a raw ``+`` in it is refused unseen. They
were shown whole (``nats://host?nkey_seed=SUAM...``). No option the library itself
reads is taken for a secret by the wider rule (``ssl_keyfile`` is a path,
``stream_key`` a key name)."""

from __future__ import annotations

import pytest

from brokerkit._options import BrokerOptions
from brokerkit._secret_options import is_secret
from brokerkit._url import BrokerURL
from brokerkit.backends.kombu._options import KombuAMQPOptions, KombuVirtualOptions
from brokerkit.backends.memory.store import MemoryOptions
from brokerkit.backends.nats._options import NatsCoreOptions, NatsOptions
from brokerkit.backends.redis._options import DRIVER_QUERY_KEYS
from brokerkit.backends.redis.list.options import RedisListOptions
from brokerkit.backends.redis.pubsub.options import RedisPubSubOptions
from brokerkit.backends.redis.stream.options import RedisStreamOptions
from brokerkit.cli._output import redact
from brokerkit.exceptions import InvalidURL

_VALUE = "SUAMK2FG4Q7Z"

_SECRET_NAMES = [
    "nkey",
    "nkey_seed",
    "nkeys_seed",
    "creds",
    "credentials",
    "user_credentials",
    "api_key",
    "apikey",
    "API-Key",
    "private_key",
    "privatekey",
    "key_password",
    "ssl_password",
    "passphrase",
    "auth",
    "auth_token",
    "authorization",
    "access_key",
    "pwd",
    "pass",
    "user_pass",
]


@pytest.mark.parametrize("name", _SECRET_NAMES)
def test_a_credential_name_is_a_secret(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize("name", _SECRET_NAMES)
def test_a_credential_option_is_masked_where_the_url_is_shown(name: str) -> None:
    url = BrokerURL.parse(f"nats://127.0.0.1:4222?{name}={_VALUE}&prefix=after1")
    for shown in (str(url), repr(url)):
        assert _VALUE not in shown and "after1" not in shown, shown
        assert "***" in shown, shown
    said = f"the server refused {_VALUE} (prefix=after1)"
    masked = redact(said, [f"nats://127.0.0.1:4222?{name}={_VALUE}&prefix=after1"])
    assert _VALUE not in masked and "after1" not in masked, masked


@pytest.mark.parametrize("name", _SECRET_NAMES)
def test_a_raw_plus_in_a_credential_option_is_refused_unseen(name: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse(f"nats://127.0.0.1:4222?{name}=SUAM+{_VALUE}")
    assert _VALUE not in str(refused.value)
    assert "raw '+'" in str(refused.value)


@pytest.mark.parametrize("name", ["nkey_seed", "creds", "api_key", "auth"])
def test_a_credential_option_typed_into_the_host_is_refused_unseen(name: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse(f"nats://{name}={_VALUE}")
    assert _VALUE not in str(refused.value)


@pytest.mark.parametrize("name", ["nkey_seed", "api_key"])
def test_an_error_for_a_url_that_does_not_parse_masks_it(name: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        BrokerURL.parse(f"nats:/127.0.0.1:4222?{name}={_VALUE}")
    assert _VALUE not in str(refused.value)


_LIBRARY = [
    BrokerOptions,
    MemoryOptions,
    NatsOptions,
    NatsCoreOptions,
    KombuAMQPOptions,
    KombuVirtualOptions,
    RedisStreamOptions,
    RedisListOptions,
    RedisPubSubOptions,
]


def test_no_option_the_library_reads_is_a_secret_but_its_password() -> None:
    names = {name for cls in _LIBRARY for name in cls.names()} | set(DRIVER_QUERY_KEYS)
    secrets = {name for name in names if is_secret(name)}
    assert secrets == {"sentinel_password"}, secrets
    for harmless in ("ssl_keyfile", "stream_key", "queue_key", "socket_keepalive", "passive"):
        assert not is_secret(harmless), harmless
