"""``dataclasses.replace()`` of a broker's options keeps their masks: an option that
followed a secret in the URL (``?sentinel_password=Tr0ub&prefix=x3TAIL`` may be one
password, split at a raw ``&``) stays ``***`` in the repr of the replaced options, and
no error of the replaced options quotes it. Before, the copy lost the mark that the
repr and the checks read: ``repr(dataclasses.replace(options, replicas=1))`` showed
``prefix='x3TAIL9'``, and a check naming the kept value quoted it."""

from __future__ import annotations

import dataclasses

import pytest

from brokerkit._options import BrokerOptions
from brokerkit._url import BrokerURL
from brokerkit.backends.redis.stream.options import RedisStreamOptions
from brokerkit.exceptions import InvalidOption

_TAIL = "x3TAIL9"
_URL = (
    "redis+stream://localhost:6379/0?sentinel=master&sentinel_password=Tr0ub"
    f"&prefix={_TAIL}&visibility_timeout=4242.5"
)


@dataclasses.dataclass(frozen=True)
class _PluginOptions(BrokerOptions):
    """What a backend plugin's ``Options`` subclass may add."""

    api_token: str | None = None
    region: str = "eu"


def _options() -> RedisStreamOptions:
    url = BrokerURL.parse(_URL)
    return RedisStreamOptions.build(url.query, {}, backend="redis+stream")


def test_the_replaced_options_mask_what_followed_a_secret() -> None:
    options = _options()
    assert _TAIL not in repr(options)  # as before
    replaced = dataclasses.replace(options, replicas=1)
    shown = repr(replaced)
    assert _TAIL not in shown, shown
    assert "4242" not in shown, shown
    assert "prefix=***" in shown, shown
    assert "replicas=1" in shown, shown
    assert replaced.prefix == _TAIL
    assert replaced == dataclasses.replace(options, replicas=1)
    assert dataclasses.replace(replaced, replicas=0) == options


def test_a_value_replaced_is_the_users_own_and_shown() -> None:
    replaced = dataclasses.replace(_options(), prefix="mine")
    shown = repr(replaced)
    assert "prefix='mine'" in shown, shown
    assert "visibility_timeout=***" in shown, shown


def test_a_plugins_replaced_options_keep_their_masks() -> None:
    options = _PluginOptions.build({"api_token": "T0ken", "region": _TAIL}, {}, backend="plugin")
    for replaced in (
        dataclasses.replace(options, serializer="json"),
        dataclasses.replace(dataclasses.replace(options, max_deliveries=3), max_deliveries=4),
    ):
        shown = repr(replaced)
        assert _TAIL not in shown and "T0ken" not in shown, shown
        assert "region=***" in shown, shown


def test_an_error_of_the_replaced_options_does_not_quote_what_followed_a_secret() -> None:
    with pytest.raises(InvalidOption) as caught:
        dataclasses.replace(_options(), heartbeat_interval=5000.0)
    text = str(caught.value)
    assert "4242" not in text, text
    assert "heartbeat_interval" in text, text


def test_an_error_on_a_replaced_value_still_quotes_it() -> None:
    with pytest.raises(InvalidOption, match="got 100"):
        dataclasses.replace(_options(), replicas=100)


def test_the_mark_is_no_option() -> None:
    assert all(not name.startswith("_") for name in RedisStreamOptions.names())
    with pytest.raises(InvalidOption, match="unknown option"):
        RedisStreamOptions.build(
            {}, {"_brokerkit_after_secret": frozenset()}, backend="redis+stream"
        )


@dataclasses.dataclass(frozen=True)
class _InitVarOptions(BrokerOptions):
    """A plugin's options whose ``__post_init__`` takes an InitVar."""

    region: str = "eu"
    scale: dataclasses.InitVar[int] = 1

    def __post_init__(self, scale: int) -> None:
        super().__post_init__()
        if scale < 1:
            raise InvalidOption(f"scale must be 1 or more, got {scale}")


def test_an_options_class_with_an_init_var_still_builds_and_checks() -> None:
    options = _InitVarOptions.build({}, {"region": "us"}, backend="plugin")
    assert options.region == "us"
    with pytest.raises(InvalidOption, match="scale must be 1 or more"):
        _InitVarOptions(scale=0)
