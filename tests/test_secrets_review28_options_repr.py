"""``repr()`` and ``str()`` of a broker's options show no secret: not the value of an
option whose name is a secret (a plugin's ``Options`` subclass with an ``api_token``
field showed it whole: only the redis ``sentinel_password`` field was left out of its
dataclass repr by hand), nor the value of an option that followed a secret in the URL
(``?sentinel_password=Tr0ub&prefix=x3TAIL`` may be one password, split at a raw
``&``: ``str(url)`` hides it, ``repr(broker.options)`` showed ``prefix='x3TAIL'``)."""

from __future__ import annotations

import dataclasses

import pytest

import brokerkit
from brokerkit._options import BrokerOptions

_TAIL = "x3TAIL9"


@dataclasses.dataclass(frozen=True)
class _PluginOptions(BrokerOptions):
    """What a backend plugin's ``Options`` subclass may add."""

    api_token: str | None = None
    password: str | None = None
    client_secret: str = ""
    region: str = "eu"


def test_a_plugin_options_secret_fields_are_masked() -> None:
    options = _PluginOptions.build(
        {"region": "us", "api_token": "T0kenV4lue"},
        {"password": "Pa55wordV4lue", "client_secret": "Cl1entS3cret"},
        backend="plugin",
    )
    for shown in (repr(options), str(options)):
        for secret in ("T0kenV4lue", "Pa55wordV4lue", "Cl1entS3cret"):
            assert secret not in shown, shown
        assert "region='us'" in shown, shown
        assert "api_token=***" in shown, shown
    unset = _PluginOptions.build({}, {}, backend="plugin")
    assert "api_token=None" in repr(unset), repr(unset)


def test_a_subclass_of_a_subclass_is_masked_too() -> None:
    @dataclasses.dataclass(frozen=True)
    class _More(_PluginOptions):
        signing_token: str = ""

    options = _More.build({}, {"signing_token": "S1gnTok"}, backend="plugin")
    assert "S1gnTok" not in repr(options), repr(options)


def test_a_subclass_keeps_its_own_repr() -> None:
    @dataclasses.dataclass(frozen=True)
    class _Own(_PluginOptions):
        def __repr__(self) -> str:
            return "own"

    assert repr(_Own.build({}, {}, backend="plugin")) == "own"


@pytest.mark.parametrize(
    "url",
    [
        # nothing listens on port 1: the brokers connect lazily and are closed unused
        f"redis+pubsub://127.0.0.1:1/0?sentinel=m&sentinel_password=abc&prefix={_TAIL}",
        f"redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password=abc&prefix={_TAIL}",
        f"redis+list://127.0.0.1:1/0?sentinel=m&sentinel_password=abc&prefix={_TAIL}",
    ],
)
def test_an_option_that_followed_a_secret_is_masked_in_the_options_repr(url: str) -> None:
    with brokerkit.connect(url) as broker:
        for shown in (repr(broker.options), str(broker.options), repr(broker)):
            assert _TAIL not in shown, shown
            assert "abc" not in shown, shown
        # the option is read as usual
        assert broker.options.prefix == _TAIL  # type: ignore[attr-defined]


def test_an_option_after_a_path_secret_is_masked_in_the_options_repr() -> None:
    with brokerkit.connect("memory://shop/token=abc?maxlen=123457") as broker:
        assert broker.options.maxlen == 123457  # type: ignore[attr-defined]
        assert "123457" not in repr(broker.options), repr(broker.options)


def test_a_keyword_given_after_all_is_shown() -> None:
    # a keyword's value is no part of the secret: shown, as the options' checks show it
    url = "redis+pubsub://127.0.0.1:1/0?sentinel=m&sentinel_password=abc&prefix=fromurl"
    with brokerkit.connect(url, prefix="keyworded") as broker:
        assert "prefix='keyworded'" in repr(broker.options), repr(broker.options)
        # the options before the secret are shown, the secret is not
        assert "sentinel='m'" in repr(broker.options), repr(broker.options)
        assert "abc" not in repr(broker.options), repr(broker.options)
    # a secret field that the dataclass repr would show (a plugin's) stays masked, the
    # keyword given for an option that followed it in the URL is shown
    options = _PluginOptions.build(
        {"api_token": "T0kenV4lue", "region": "us"}, {"region": "kw"}, backend="plugin"
    )
    assert repr(options) == (
        "_PluginOptions(serializer='json', visibility_timeout=30.0, max_deliveries=None, "
        "api_token=***, password=None, client_secret=***, region='kw')"
    )


def test_options_without_secrets_read_as_before() -> None:
    with brokerkit.connect("memory://?maxlen=5") as broker:
        assert repr(broker.options) == (
            "MemoryOptions(serializer='json', visibility_timeout=30.0, "
            "max_deliveries=None, maxlen=5, clock=None)"
        )
