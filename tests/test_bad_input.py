"""Bad input found by the input review: each gets brokerkit's own error, naming what is
valid, before anything is sent, and no secret is ever quoted."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import InvalidMessage, InvalidOption
from brokerkit._options import MAX_SECONDS, BrokerOptions
from brokerkit.cli._app import run
from brokerkit.cli._url import URL_ENV

SECRET = "TopSecretPw9"


def _shown(value: object) -> str:
    """A test id: repr, but not 400 digits of it."""
    return "huge-int" if isinstance(value, int) and value > 10**20 else repr(value)


@pytest.fixture
def memory() -> Iterator[brokerkit.Broker]:
    with brokerkit.connect("memory://") as broker:
        yield broker


def leased(broker: brokerkit.Broker, topic: str = "t") -> brokerkit.Delivery:
    broker.publish(topic, b"x")
    delivery = next(iter(broker.consume(topic, timeout=5, limit=1)))
    return delivery


# -- 1. a secret option is never quoted ---------------------------------------------


@pytest.mark.parametrize("secret", [SECRET.encode(), 987654321, [SECRET]])
def test_a_sentinel_password_of_the_wrong_type_is_not_quoted(secret: object) -> None:
    with pytest.raises(InvalidOption) as caught:
        brokerkit.connect(
            "redis+stream://127.0.0.1:1/0", sentinel="mymaster", sentinel_password=secret
        )
    message = str(caught.value)
    assert "sentinel_password=***" in message
    assert "expected str or none" in message
    assert str(secret) not in message
    assert repr(secret) not in message
    assert "987654321" not in message and SECRET not in message


@dataclasses.dataclass(frozen=True)
class _SecretNumberOptions(BrokerOptions):
    api_token: int | None = None


@pytest.mark.parametrize("text", ["TopSecretPw9", "987654321999999999999"])
def test_a_secret_option_that_does_not_convert_or_is_out_of_range_is_not_quoted(
    text: str,
) -> None:
    with pytest.raises(InvalidOption) as caught:
        _SecretNumberOptions.build({"api_token": text}, {}, backend="test")
    assert text not in str(caught.value)
    assert "***" in str(caught.value)
    with pytest.raises(InvalidOption) as caught:
        _SecretNumberOptions.build({}, {"api_token": -987654321}, backend="test")
    assert "987654321" not in str(caught.value)
    assert "api_token cannot be negative" in str(caught.value)


# -- 2. a mistyped URL is never taken for a topic --------------------------------------

TYPO = f"redis+stream:/:{SECRET}@127.0.0.1:1/0"


@pytest.mark.parametrize(
    "argv",
    [
        ["publish", TYPO, "hello"],
        ["consume", TYPO, "-t", "0"],
        ["inspect", TYPO],
        ["publish", f":{SECRET}@127.0.0.1:1/0", "hello"],
        ["publish", f"memory:/:{SECRET}@x", "hello"],
    ],
)
def test_a_mistyped_url_with_the_url_in_the_environment_is_refused_masked(
    argv: list[str],
    shared: tuple[str, brokerkit.Broker],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, broker = shared
    monkeypatch.setenv(URL_ENV, url)
    status = run(argv)
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert "is not a broker URL" in captured.err
    assert "***" in captured.err
    # The same status as the same typo without BROKERKIT_URL: a bad URL (docs/cli.md).
    assert status == 1
    assert broker.topics() == []  # nothing published under the typo as a topic name
    monkeypatch.delenv(URL_ENV)
    assert run([*argv[:2], "orders", *argv[2:]]) == 1
    assert SECRET not in capsys.readouterr().err


def test_a_topic_that_only_looks_like_a_word_still_takes_the_url_from_the_environment(
    shared: tuple[str, brokerkit.Broker],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, broker = shared
    monkeypatch.setenv(URL_ENV, url)
    assert run(["publish", "orders:eu", "hello"]) == 0
    assert broker.topics() == ["orders:eu"]
    # A topic holding "@" must be given after an explicit URL; the error says so.
    assert run(["publish", "team@eu", "hello"]) == 1
    assert "give the URL first" in capsys.readouterr().err
    assert run(["publish", url, "team@eu", "hello"]) == 0
    assert sorted(broker.topics()) == ["orders:eu", "team@eu"]


# -- 3. extend(seconds=...) -----------------------------------------------------------

BAD_LEASES: list[Any] = ["5", b"5", True, math.inf, -math.inf, math.nan, 0, -1]
BAD_LEASES += [0.0001, 10**400, MAX_SECONDS + 1, 10**9, 1e12]


@pytest.mark.parametrize("seconds", BAD_LEASES, ids=_shown)
def test_extend_refuses_what_is_not_a_lease_and_keeps_the_lease(
    seconds: Any, memory: brokerkit.Broker
) -> None:
    delivery = leased(memory)
    with pytest.raises(InvalidOption) as caught:
        delivery.extend(seconds=seconds)
    assert "from 0.001 to 31536000" in str(caught.value)
    delivery.extend(seconds=MAX_SECONDS)  # the largest is fine
    delivery.extend(seconds=1)
    delivery.ack()


def test_extend_by_a_huge_number_no_longer_loses_a_redis_list_lease(
    redis_broker: Callable[..., brokerkit.Broker],
) -> None:
    broker = redis_broker("redis+list")
    for seconds in (1e12, 1e16, 10**400, math.inf):
        delivery = leased(broker, "huge")
        with pytest.raises(InvalidOption):
            delivery.extend(seconds=seconds)
        delivery.extend(seconds=MAX_SECONDS)
        delivery.ack()  # the lease is intact: no StaleDelivery
    assert list(broker.consume("huge", timeout=0)) == []


@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list"])
def test_extend_of_a_bad_type_is_invalid_option_on_redis(
    scheme: str, redis_broker: Callable[..., brokerkit.Broker]
) -> None:
    delivery = leased(redis_broker(scheme))
    for seconds in BAD_LEASES[:6]:
        with pytest.raises(InvalidOption):
            delivery.extend(seconds=seconds)
    delivery.ack()


def test_extend_is_checked_in_asyncio_too() -> None:
    async def main() -> None:
        async with await brokerkit.aio.connect("memory://") as broker:
            await broker.publish("t", b"x")
            subscription = await broker.subscribe("t")
            delivery = await subscription.receive(timeout=5)
            assert delivery is not None
            for seconds in [*BAD_LEASES[:4], 10**400]:
                with pytest.raises(InvalidOption):
                    await delivery.extend(seconds=seconds)
            await delivery.ack()

    asyncio.run(main())


# -- 4. receive(timeout=...) / consume(timeout=...) ------------------------------------

BAD_TIMEOUTS: list[Any] = [math.nan, math.inf, -math.inf, "1", b"1", True, 10**400, [1]]


@pytest.mark.timeout(20)  # before the fix, NaN waited for ever
@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=_shown)
def test_receive_and_consume_refuse_a_bad_timeout(timeout: Any, memory: brokerkit.Broker) -> None:
    with pytest.raises(InvalidOption) as caught:
        list(memory.consume("t", timeout=timeout))
    assert "None (wait without end) or a finite number of seconds" in str(caught.value)
    memory.publish("t", b"x")
    with memory.subscribe("t") as subscription:
        with pytest.raises(InvalidOption):
            subscription.receive(timeout=timeout)
        delivery = subscription.receive(timeout=5)  # nothing was lost
        assert delivery is not None
        delivery.ack()


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5, 0.01, Fraction(1, 100), 1e300, None])
def test_receive_takes_every_finite_timeout_and_none(
    timeout: Any, memory: brokerkit.Broker
) -> None:
    memory.publish("t", b"x")
    with memory.subscribe("t") as subscription:
        delivery = subscription.receive(timeout=timeout)
        assert delivery is not None
        delivery.ack()
        if timeout is not None:
            assert subscription.receive(timeout=timeout if timeout < 1 else 0) is None


@pytest.mark.timeout(20)
@pytest.mark.parametrize("scheme", ["redis+stream", "redis+list"])
def test_a_bad_timeout_is_invalid_option_on_redis(
    scheme: str, redis_broker: Callable[..., brokerkit.Broker]
) -> None:
    broker = redis_broker(scheme)
    for timeout in BAD_TIMEOUTS[:4]:
        with pytest.raises(InvalidOption):
            list(broker.consume("t", timeout=timeout))
        with broker.subscribe("t") as subscription, pytest.raises(InvalidOption):
            subscription.receive(timeout=timeout)


@pytest.mark.timeout(20)
def test_a_bad_timeout_is_refused_in_asyncio_too() -> None:
    async def main() -> None:
        async with await brokerkit.aio.connect("memory://") as broker:
            subscription = await broker.subscribe("t")
            for timeout in BAD_TIMEOUTS[:4]:
                with pytest.raises(InvalidOption):
                    await subscription.receive(timeout=timeout)
                with pytest.raises(InvalidOption):
                    async for _ in broker.consume("t", timeout=timeout):
                        pass
            await subscription.close()

    asyncio.run(main())


# -- 5. seconds options given as an int --------------------------------------------


@pytest.mark.parametrize("value", [10**9, 4_000_000_000, 10**10, 10**400], ids=_shown)
def test_an_int_seconds_option_gets_the_seconds_limit(value: int) -> None:
    with pytest.raises(InvalidOption) as caught:
        brokerkit.connect("memory://", visibility_timeout=value)
    message = str(caught.value)
    assert "at most 31536000 seconds" in message
    assert "4294967296" not in message


def test_an_int_seconds_option_within_the_limit_and_counts_are_as_before() -> None:
    with brokerkit.connect("memory://", visibility_timeout=31_536_000) as broker:
        assert broker.options.visibility_timeout == 31_536_000
    with pytest.raises(InvalidOption, match="at most 4294967296,"):
        brokerkit.connect("memory://", max_deliveries=10**10)


def test_an_int_seconds_option_of_a_redis_backend_gets_the_seconds_limit() -> None:
    with pytest.raises(InvalidOption, match="reconnect_timeout must be at most 31536000 seconds"):
        brokerkit.connect("redis+list://127.0.0.1:1/0", reconnect_timeout=10**9)


# -- 6. publish_many of something that is no iterable -------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.calls = 0

    @brokerkit.hookimpl
    def brokerkit_publish_start(
        self, topic: str, headers: dict[str, str], count: int, scope: dict[str, Any]
    ) -> None:
        self.calls += 1


@pytest.mark.parametrize("hooked", [False, True], ids=["plain", "with-publish-hooks"])
@pytest.mark.parametrize("bodies", [None, 5, 3.5, object()], ids=["None", "int", "float", "object"])
def test_publish_many_of_no_iterable_is_invalid_message(
    bodies: object, hooked: bool, memory: brokerkit.Broker
) -> None:
    plugin = _Recorder()
    manager = brokerkit.get_plugin_manager()
    if hooked:
        manager.register(plugin)
    try:
        with pytest.raises(InvalidMessage, match="publish_many takes an iterable of bodies"):
            memory.publish_many("t", bodies)  # type: ignore[arg-type]
    finally:
        if hooked:
            manager.unregister(plugin)
    assert plugin.calls == 0  # refused before the hooks saw a publish
    assert list(memory.consume("t", timeout=0)) == []
    assert memory.publish_many("t", (b for b in [b"a", b"b"])) != []  # a generator is fine


# -- 7. CLI upper bounds of --interval and --every ----------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["top", "memory://", "--interval", "1e300", "--iterations", "1"],
        ["top", "memory://", "--interval", "31536001", "--iterations", "1"],
        ["rescue", "memory://", "t", "--every", "1e300"],
        ["rescue", "memory://", "t", "--every", "31536001"],
    ],
)
def test_a_huge_interval_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "at most 31536000 (365 days)" in err
    assert "OverflowError" not in err


@pytest.mark.parametrize("group", ["bad group!", "x" * 201, ".starts-with-a-dot"])
def test_an_invalid_group_is_named_as_a_group(group: str) -> None:
    """Before, the error said "invalid topic 'bad group!'"."""
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(brokerkit.InvalidTopic, match="group") as raised:
            broker.subscribe("t", group=group)
        assert "topic" not in str(raised.value)
