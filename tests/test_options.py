"""Options from the query string and keywords: typed, validated, explained."""

from __future__ import annotations

from pathlib import Path

import pytest

import brokerkit
from brokerkit import BrokerURL, InvalidOption, InvalidURL, ManualClock
from brokerkit._topics import check_consumer
from brokerkit.backends.redis._options import redis_database


def test_query_values_are_converted_to_the_field_types() -> None:
    with brokerkit.connect(
        "memory://?visibility_timeout=2.5&max_deliveries=3&maxlen=10&serializer=msgpack"
    ) as broker:
        assert broker.options.visibility_timeout == 2.5
        assert broker.options.max_deliveries == 3
        assert broker.options.serializer == "msgpack"


def test_keywords_win_over_the_query_string() -> None:
    with brokerkit.connect("memory://?max_deliveries=3", max_deliveries=5) as broker:
        assert broker.options.max_deliveries == 5


def test_unknown_option_lists_the_valid_ones_with_a_did_you_mean() -> None:
    with pytest.raises(InvalidOption) as excinfo:
        brokerkit.connect("memory://?visiblity_timeout=3")
    message = str(excinfo.value)
    assert "did you mean 'visibility_timeout'" in message
    assert "max_deliveries" in message
    assert "serializer" in message


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("visibility_timeout=soon", "expected a number"),
        ("visibility_timeout=0", "positive number"),
        ("max_deliveries=0", "1 or more"),
        ("max_deliveries=2.5", "whole number"),
        ("serializer=pickle", "valid serializers: json, msgpack"),
        ("clock=system", "cannot be given in a URL"),
    ],
)
def test_bad_values_say_what_is_valid(query: str, complaint: str) -> None:
    with pytest.raises(InvalidOption, match=complaint):
        brokerkit.connect(f"memory://?{query}")


def test_keyword_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidOption, match="expected a number"):
        brokerkit.connect("memory://", visibility_timeout=[3])
    with pytest.raises(InvalidOption, match=r"brokerkit\.Clock"):
        brokerkit.connect("memory://", clock="manual")


def test_object_options_come_by_keyword() -> None:
    clock = ManualClock()
    with brokerkit.connect("memory://", clock=clock) as broker:
        assert broker.options.clock is clock


def test_none_clears_an_optional_option() -> None:
    with brokerkit.connect("memory://?max_deliveries=none") as broker:
        assert broker.options.max_deliveries is None


# -- numbers out of range are refused at connect(), with the valid range -----------------

_ALL_SCHEMES = ["memory://", "redis+list://127.0.0.1:1/0", "redis+stream://127.0.0.1:1/0"]


@pytest.mark.parametrize("base", _ALL_SCHEMES)
@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("visibility_timeout=inf", "finite number of seconds, at most 31536000"),
        ("visibility_timeout=nan", "finite number"),
        ("visibility_timeout=-inf", "finite number"),
        ("visibility_timeout=1e999", "finite number"),
        ("visibility_timeout=1e12", "at most 31536000 seconds"),
        ("visibility_timeout=0.0000001", "from 0.001 to 31536000"),
        ("visibility_timeout=-5", "cannot be negative"),
        ("max_deliveries=99999999999999999999", "at most 4294967296"),
        ("max_deliveries=-1", "cannot be negative"),
        ("maxlen=9223372036854775808", "at most 4294967296"),
    ],
)
def test_numbers_out_of_range_are_refused_at_connect(base: str, query: str, complaint: str) -> None:
    separator = "&" if "?" in base else "?"
    with pytest.raises(InvalidOption, match=complaint):
        brokerkit.connect(f"{base}{separator}{query}")


@pytest.mark.parametrize(
    ("base", "option", "value"),
    [
        ("memory://", "visibility_timeout", float("inf")),
        ("memory://", "visibility_timeout", float("nan")),
        ("memory://", "maxlen", 2**64),
        ("redis+list://127.0.0.1:1/0", "reconnect_timeout", float("inf")),
        ("redis+list://127.0.0.1:1/0", "reconnect_timeout", float("nan")),
        ("redis+stream://127.0.0.1:1/0", "max_age", float("inf")),
        ("redis+stream://127.0.0.1:1/0", "heartbeat_interval", float("nan")),
        ("redis+pubsub://127.0.0.1:1/0", "ping_interval", float("nan")),
        ("redis+pubsub://127.0.0.1:1/0", "ping_interval", 1e300),
    ],
)
def test_nan_inf_and_absurd_keywords_are_refused(base: str, option: str, value: float) -> None:
    with pytest.raises(InvalidOption, match=option):
        brokerkit.connect(base, **{option: value})


def test_the_largest_values_are_accepted() -> None:
    with brokerkit.connect(
        "memory://", visibility_timeout=365 * 24 * 3600, max_deliveries=2**32, maxlen=2**32
    ) as broker:
        assert broker.options.visibility_timeout == 365 * 24 * 3600


# -- redis-py's connection arguments are checked at connect() -----------------------------


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("protocol=4", "RESP protocol version is 2 or 3"),
        ("ssl_cert_reqs=bogus", "none, optional, required"),
        ("ssl_ca_certs=/no/such/ca.pem", "no such file"),
        ("ssl_certfile=/no/such/cert.pem", "no such file"),
        ("ssl_keyfile=/no/such/key.pem", "no such file"),
        ("ssl_min_version=TLSv1_2", r"771 \(TLSv1_2\)"),
        ("ssl_min_version=1", "TLS version"),
        ("ssl_check_hostname=off", "redis-py would read anything else as true"),
        ("socket_timeout=nan", "seconds from more than 0"),
        ("socket_timeout=inf", "seconds from more than 0"),
        ("socket_connect_timeout=-1", "seconds from more than 0"),
        ("socket_timeout=0", "seconds from more than 0"),
        ("health_check_interval=1.5", "whole number"),
        ("max_connections=0", "from 1"),
        ("db=abc", "whole number"),
        ("client_name=two words", "CLIENT SETNAME"),
        ("retry_on_timeout=maybe", "true or false"),
    ],
)
@pytest.mark.parametrize("scheme", ["rediss+list", "rediss+stream", "rediss+pubsub"])
def test_bad_driver_options_are_configuration_errors_at_connect(
    scheme: str, query: str, complaint: str
) -> None:
    with pytest.raises(InvalidOption, match=complaint) as excinfo:
        brokerkit.connect(f"{scheme}://u:hunter2@127.0.0.1:1/0?{query}")
    assert isinstance(excinfo.value, brokerkit.ConfigurationError)
    assert "hunter2" not in str(excinfo.value)


def test_good_driver_options_pass(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until the first connection\n")
    url = (
        f"rediss+list://127.0.0.1:1/0?protocol=3&ssl_cert_reqs=required&ssl_ca_certs={ca}"
        "&ssl_min_version=771&ssl_check_hostname=true&socket_timeout=2.5&client_name=me@host"
    )
    broker = brokerkit.connect(url)
    broker.close()


# -- the database of a Redis URL -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis+list://h", 0),
        ("redis+list://h/", 0),
        ("redis+list://h/0", 0),
        ("redis+list://h/15", 15),
        ("redis+list://h?db=3", 3),
        ("redis+list://h/3?db=3", 3),
    ],
)
def test_the_database_is_one_integer(url: str, db: int) -> None:
    assert redis_database(BrokerURL.parse(url)) == db


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+list://u:hunter2@h/1/5", "one integer from 0"),
        ("redis+list://u:hunter2@h/abc", "one integer from 0"),
        ("redis+list://u:hunter2@h/-1", "one integer from 0"),
        ("redis+list://u:hunter2@h/%C2%B2", "one integer from 0"),  # a superscript two
        ("redis+list://u:hunter2@h/1?db=2", "give one"),
        ("redis+list://u:hunter2@h?db=x", "whole number"),
    ],
)
def test_a_database_that_is_not_one_integer_is_refused(url: str, complaint: str) -> None:
    with pytest.raises(InvalidURL, match=complaint) as excinfo:
        redis_database(BrokerURL.parse(url))
    assert "hunter2" not in str(excinfo.value)


# -- consumer names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consumer", "complaint"),
    [
        (123, "must be a str, not int"),
        (b"me", "must be a str, not bytes"),
        ("", "1 to 200 characters"),
        ("x" * 201, "1 to 200 characters"),
        ("a\nb", "control characters"),
        ("a\ud800", "lone surrogate"),
    ],
)
def test_a_bad_consumer_name_is_an_invalid_option(consumer: object, complaint: str) -> None:
    with pytest.raises(InvalidOption, match=complaint):
        check_consumer(consumer)


@pytest.mark.parametrize("consumer", [None, "worker-1", "room 42/alice", "é@host"])
def test_good_consumer_names_pass(consumer: str | None) -> None:
    assert check_consumer(consumer) == consumer


def test_subscribe_refuses_a_non_string_consumer_name() -> None:
    broker = brokerkit.connect("memory://")
    with pytest.raises(InvalidOption, match="consumer name must be a str"):
        broker.subscribe("orders", consumer=123)  # type: ignore[arg-type]
