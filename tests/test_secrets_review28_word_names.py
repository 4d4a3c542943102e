"""Which option names are secrets is told by whole words, not by a substring: b209edf
took any name holding ``auth``, ``cred``, ``seed`` or ``nkey`` for a secret, so
ordinary options (``authSource``, ``auth_mechanism``, ``prefetch_credit``,
``random_seed``, ``monkey_patch``, ``pass_through``...) were masked, and URLs that
parsed before it were refused (``?authSource=admin&replicaSet=rs0`` is fine; a raw
``+`` in ``?seed=1+2``, an option after ``auth_mechanism`` not written as
``name=value``, a vhost ``;authority=x``), while the CLI masked every short digit of
a line for a URL argument ``...?authuser=0&usp=sharing``. Credential names stay
secrets: ``nkey_seed``, ``creds``, ``api_key``, ``API-Key``, ``private_key``,
``auth_token``, ``user_credentials``...; and those 1ece888 let through, their values shown
in ``str()`` of the URL: plural keys (``api_keys``), the word ``auth`` not alone
(``redis_auth``, ``basic_auth``, ``auth_key``, ``auth_header``; a few names of how to
authenticate excepted), ``user_seed``, ``credsfile``."""

from __future__ import annotations

import pytest

from brokerkit._secret_options import is_secret
from brokerkit._url import BrokerURL
from brokerkit.cli._output import redact

_ORDINARY = [
    "author",
    "authority",
    "authSource",
    "auth_mechanism",
    "auth_timeout",
    "authuser",
    "oauth_version",
    "OAuthVersion",
    "credit",
    "prefetch_credit",
    "seed",
    "seeds",
    "seed_nodes",
    "random_seed",
    "monkey_patch",
    "pass_through",
    "passive",
    "no_auth_user",
    "tls_client_auth",
    "key",
    "stream_key",
    "ssl_keyfile",
    # the plural keys, auth and seed credentials below must not take these
    "keys",
    "script_keys",
    "monkeys",
    "auth_source",
    "auth_mechanism",
    "authMechanism",
    "auth_method",
    "auth_type",
    "auth_timeout",
    "seed_user",
    "credit_limit",
]

_CREDENTIALS = [
    "nkey_seed",
    "nkeys_seed",
    "nkeySeed",
    "nkeyseed",
    "nkey",
    "creds",
    "cred",
    "credentials",
    "user_credentials",
    "userCredentials",
    "api_key",
    "apikey",
    "API-Key",
    "apiKey",
    "APIKey",
    "x-api-key",
    "private_key",
    "privateKey",
    "access_key",
    "auth_token",
    "authToken",
    "authorization",
    "auth",
    "password",
    "sentinel_password",
    "SentinelPassword",
    "passwd",
    "pwd",
    "passphrase",
    "key_passphrase",
    "client_secret",
    "token",
    "pass",
    "user_pass",
    "db_pw",
    # 1ece888 let these through: plural keys, the word auth last or first, a user's
    # nkey seed, a creds file written as one word
    "api_keys",
    "apiKeys",
    "apikeys",
    "access_keys",
    "accesskeys",
    "private_keys",
    "privatekeys",
    "redis_auth",
    "sentinel_auth",
    "basic_auth",
    "proxy_auth",
    "http_auth",
    "auth_key",
    "authKey",
    "authkey",
    "auth_code",
    "auth_header",
    "user_seed",
    "userSeed",
    "credsfile",
    "credsFile",
]


@pytest.mark.parametrize("name", _ORDINARY)
def test_an_ordinary_name_holding_a_credential_word_is_no_secret(name: str) -> None:
    assert not is_secret(name)


@pytest.mark.parametrize("name", _CREDENTIALS)
def test_a_credential_name_stays_a_secret(name: str) -> None:
    assert is_secret(name)
    url = BrokerURL.parse(f"nats://127.0.0.1:4222?{name}=SUAMV4LUE&prefix=after1")
    assert "SUAMV4LUE" not in str(url) and "after1" not in str(url), str(url)


@pytest.mark.parametrize(
    ("url", "path", "query"),
    [
        (
            "x://h/db?authSource=admin&replicaSet=rs0",
            "/db",
            {"authSource": "admin", "replicaSet": "rs0"},
        ),
        (
            "x://h?auth_mechanism=SCRAM-SHA-256&x-max-priority=10",
            "",
            {"auth_mechanism": "SCRAM-SHA-256", "x-max-priority": "10"},
        ),
        ("x://h?seed=1+2", "", {"seed": "1 2"}),
        (
            "x://h?random_seed=1+2&prefetch_credit=5",
            "",
            {"random_seed": "1 2", "prefetch_credit": "5"},
        ),
        ("amqp://h/vhost;authority=x", "/vhost;authority=x", {}),
        ("amqp://h/vhost&seed_nodes=a", "/vhost&seed_nodes=a", {}),
        (
            "x://h?tls_client_auth=a+b&monkey_patch=1&pass_through=yes",
            "",
            {
                "tls_client_auth": "a b",
                "monkey_patch": "1",
                "pass_through": "yes",
            },
        ),
    ],
)
def test_a_url_with_ordinary_options_parses_and_shows_as_before(
    url: str, path: str, query: dict[str, str]
) -> None:
    parsed = BrokerURL.parse(url)
    assert parsed.path == path
    assert dict(parsed.query) == query
    assert "***" not in str(parsed), str(parsed)


def test_a_redis_auth_option_is_masked_in_the_url() -> None:
    url = BrokerURL.parse("redis+stream://h/0?redis_auth=S3cretPw")
    assert "S3cretPw" not in str(url), str(url)


def test_the_cli_masks_nothing_for_a_url_without_secrets() -> None:
    line = "brokerkit: error: step 0 of 10 failed at 127.0.0.1:4222 after 1 s"
    argument = "https://docs.google.com/doc?authuser=0&usp=sharing"
    assert redact(line, [argument]) == line
    assert redact(f"see {argument}", [argument]) == f"see {argument}"
