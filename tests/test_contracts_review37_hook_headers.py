"""The contract suite with a message-hook plugin installed (review 37): a
``brokerkit_publish_start`` hook that adds a header (a trace context, as the hookspec
invites and the OpenTelemetry instrumentation does) made the suite fail a correct
backend, "a message arrives exactly as it was published: the headers changed", on
every round-trip, body-kind and held-message test. The suite now expects the headers
the hooks added as well; a backend that adds, changes or drops headers itself is
still caught, the hook installed."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import ManualClock, Message
from brokerkit.backends.memory import MemoryBroker
from brokerkit.contracts import BrokerContract, ContractEnv, ManualTimeline
from brokerkit.contracts._delivery import DeliveryContract
from brokerkit.contracts._held import HeldMessageContract
from brokerkit.contracts._messages import MessageContract
from brokerkit.contracts._payloads import PayloadContract
from tests.broken_backends import BROKEN_BACKENDS
from tests.conftest import RedisTarget, registered

#: The module of the suite's harness, whose plugin writes down the headers sent.
_HARNESS = "brokerkit.contracts._harness"


class TraceHook:
    """A message-hook plugin that gives every publish a trace context: one header the
    same each time, and one of this publish's own."""

    @brokerkit.hookimpl
    def brokerkit_publish_start(self, headers: dict[str, str], scope: dict[str, Any]) -> None:
        headers["obs-trace"] = "abc"
        headers["obs-span"] = uuid.uuid4().hex


class _Traced:
    @pytest.fixture(autouse=True)
    def _trace_hook(self) -> Iterator[TraceHook]:
        yield from registered(TraceHook())


def _memory(clock: ManualClock, cls: type[MemoryBroker] | None = None) -> Callable[..., Any]:
    url = f"memory://r37-hooked-{uuid.uuid4().hex}"
    if cls is None:
        return lambda **options: brokerkit.connect(url, clock=clock, **options)
    return lambda **options: cls.from_url(url, clock=clock, **options)


class TestMemoryContractWithATraceHook(_Traced, BrokerContract):
    """The whole suite passes a correct backend, the hook installed."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def timeline(self, clock: ManualClock) -> ManualTimeline:
        return ManualTimeline(clock)

    @pytest.fixture
    def make_broker(self, clock: ManualClock) -> Callable[..., Any]:
        return _memory(clock)


class _HeaderPromises(MessageContract, PayloadContract, HeldMessageContract):
    """The contract tests that compare a delivery's headers with those published."""

    contract = BrokerContract.contract
    timeline = BrokerContract.timeline


class TestMemoryAsyncHeadersWithATraceHook(_Traced, _HeaderPromises):
    """The same over the asyncio API (its hooks run in the event loop's thread)."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def timeline(self, clock: ManualClock) -> ManualTimeline:
        return ManualTimeline(clock)

    @pytest.fixture
    def make_broker(self, clock: ManualClock) -> Callable[..., Any]:
        url = f"memory://r37-hooked-{uuid.uuid4().hex}"
        return lambda **options: brokerkit.aio.connect(url, clock=clock, **options)


class TestRedisListHeadersWithATraceHook(_Traced, _HeaderPromises):
    """Over a network backend, which stores the headers itself."""

    example_share = 0.25

    @pytest.fixture
    def make_broker(self, redis_target: RedisTarget, prefix: str) -> Callable[..., Any]:
        url = redis_target.url("redis+list", prefix=prefix)
        return lambda **options: brokerkit.connect(url, **options)


class TestMemoryHeadersWithOpenTelemetry(_HeaderPromises):
    """With brokerkit's own OpenTelemetry instrumentation, whose ``traceparent`` is
    different for each publish (the held-message test publishes twice)."""

    @pytest.fixture(autouse=True)
    def _instrumented(self) -> Iterator[None]:
        pytest.importorskip("opentelemetry.sdk")
        from tests.spans import recorded_spans

        with recorded_spans():
            yield

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def timeline(self, clock: ManualClock) -> ManualTimeline:
        return ManualTimeline(clock)

    @pytest.fixture
    def make_broker(self, clock: ManualClock) -> Callable[..., Any]:
        return _memory(clock)


# -- the hook installed, a backend that breaks headers itself is still caught ----------


class DropsAddedHeaderInPlace(MemoryBroker):
    """Drops ``obs-trace`` from each message before storing it (held too), editing
    the message handed to it (the dict the publish built), not a copy."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        _drop_in_place(messages)
        super()._publish(topic, messages)

    def _publish_delayed(self, topic: str, messages: Sequence[Message], delay: float) -> None:
        _drop_in_place(messages)
        super()._publish_delayed(topic, messages, delay)


def _drop_in_place(messages: Sequence[Message]) -> None:
    for message in messages:
        message.headers.pop("obs-trace", None)  # type: ignore[attr-defined]


class AddsAHeaderOfItsOwn(MemoryBroker):
    """Stores each message with a header of the backend's own."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        super()._publish(
            topic,
            [dataclasses.replace(m, headers={**m.headers, "x-hop": "1"}) for m in messages],
        )


class ChangesTheHooksHeader(MemoryBroker):
    """Stores each message with the hook's ``obs-span`` replaced."""

    def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        super()._publish(
            topic,
            [dataclasses.replace(m, headers={**m.headers, "obs-span": "0"}) for m in messages],
        )


def _round_trip(env: ContractEnv) -> None:
    MessageContract.test_round_trip_keeps_body_headers_and_id(BrokerContract(), env)


def _payload(env: ContractEnv) -> None:
    PayloadContract.test_every_body_kind_and_size_survives(
        BrokerContract(), env, b"", None, "application/octet-stream"
    )


def _held(env: ContractEnv) -> None:
    HeldMessageContract.test_a_held_message_arrives_as_it_was_published(BrokerContract(), env)


def _dead_letter(env: ContractEnv) -> None:
    DeliveryContract.test_max_deliveries_then_dead_letter(BrokerContract(), env)


@pytest.mark.parametrize(
    ("backend", "test", "reason"),
    [
        pytest.param(DropsAddedHeaderInPlace, _round_trip, "arrived as", id="drops-round-trip"),
        pytest.param(DropsAddedHeaderInPlace, _payload, "the headers changed", id="drops-payload"),
        pytest.param(DropsAddedHeaderInPlace, _held, "headers", id="drops-held"),
        pytest.param(AddsAHeaderOfItsOwn, _round_trip, "'x-hop': '1'", id="adds-round-trip"),
        pytest.param(AddsAHeaderOfItsOwn, _payload, "'x-hop': '1'", id="adds-payload"),
        pytest.param(ChangesTheHooksHeader, _round_trip, "'obs-span': '0'", id="changes"),
        pytest.param(
            BROKEN_BACKENDS["header_names_folded"],
            _round_trip,
            "arrived as {'trace-id': 'b'",
            id="header_names_folded",
        ),
        pytest.param(
            BROKEN_BACKENDS["delayed_publish_drops_headers"],
            _held,
            "a delayed publish arrives exactly as it was published: headers",
            id="delayed_publish_drops_headers",
        ),
        pytest.param(
            BROKEN_BACKENDS["dead_letters_lose_headers"],
            _dead_letter,
            "the headers were lost",
            id="dead_letters_lose_headers",
        ),
    ],
)
def test_a_backend_that_breaks_headers_is_caught_with_a_trace_hook(
    backend: type[MemoryBroker], test: Callable[[ContractEnv], None], reason: str
) -> None:
    clock = ManualClock()
    env = ContractEnv(_memory(clock, backend), ManualTimeline(clock))
    try:
        with registered_hook(), pytest.raises(AssertionError) as failed:
            test(env)
    finally:
        env.close_all()
    assert reason in str(failed.value), str(failed.value)


def registered_hook() -> contextlib.AbstractContextManager[TraceHook]:
    """A :class:`TraceHook` registered while the block runs."""
    return contextlib.contextmanager(registered)(TraceHook())


def test_the_suites_probe_is_there_only_while_a_publish_hook_is() -> None:
    """No publish hook: the suite registers nothing (a publish takes the path without
    hooks); one installed: its probe is registered by the test's first broker and gone
    when the test's brokers close."""
    manager = brokerkit.get_plugin_manager()

    def probes() -> list[object]:
        return [p for p in manager.get_plugins() if type(p).__module__ == _HARNESS]

    clock = ManualClock()
    env = ContractEnv(_memory(clock), ManualTimeline(clock))
    try:
        env.broker()
        assert probes() == []
    finally:
        env.close_all()
    with registered_hook():
        env = ContractEnv(_memory(clock), ManualTimeline(clock))
        try:
            broker = env.broker()
            assert len(probes()) == 1
            message_id = broker.publish(env.topic(), "x", headers={"a": "1"})
            sent = env.sent_headers(message_id, {"a": "1"})
            assert sent.keys() == {"a", "obs-trace", "obs-span"}
        finally:
            env.close_all()
        assert probes() == []
