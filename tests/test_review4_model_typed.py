"""A typed object brokerkit publishes comes back equal in a handler annotated with its
type: pydantic models with aliases, alias generators, computed fields and strict
validation, msgspec Structs with non-str map keys; published as JSON and as msgpack."""

from __future__ import annotations

import dataclasses
import datetime
import threading
from typing import Any

import msgspec
import pydantic
import pydantic.alias_generators
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit.worker._typed import InvalidBody, bind
from tests.test_worker import DEADLINE, dead_letters
from tests.waiting import wait_until


class Aliased(pydantic.BaseModel):
    order_id: int = pydantic.Field(alias="orderId")
    note: str


class Camel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(alias_generator=pydantic.alias_generators.to_camel)
    order_id: int
    customer_name: str


class Computed(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    a: int

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return self.a * 2


class Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)
    when: datetime.datetime
    pair: tuple[int, int]


class Counts(msgspec.Struct):
    by_id: dict[int, int]


class Renamed(msgspec.Struct, rename="camel"):
    order_id: int
    when: datetime.datetime


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
int64 = st.integers(-(2**63), 2**63 - 1)
when = st.datetimes(timezones=st.just(datetime.timezone.utc))

#: Every model with a strategy for its instances, and the serializers it round-trips under.
MODELS: dict[type, tuple[st.SearchStrategy[Any], tuple[str, ...]]] = {
    Aliased: (st.builds(Aliased, orderId=int64, note=text), ("json", "msgpack")),
    Camel: (st.builds(Camel, orderId=int64, customerName=text), ("json", "msgpack")),
    Computed: (st.builds(Computed, a=int64), ("json", "msgpack")),
    # msgpack carries a datetime as text, which a strict model refuses in Python mode
    Strict: (st.builds(Strict, when=when, pair=st.tuples(int64, int64)), ("json",)),
    Counts: (
        st.builds(Counts, by_id=st.dictionaries(int64, int64, max_size=5)),
        ("json", "msgpack"),
    ),
    Renamed: (st.builds(Renamed, order_id=int64, when=when), ("json", "msgpack")),
}
CASES = [
    (model, serializer) for model, (_, serializers) in MODELS.items() for serializer in serializers
]


def _handler_of(model: type, action: Any = None) -> Any:
    """A handler whose body parameter is annotated with ``model``, as ``body: Model`` is."""

    def handle(body: Any) -> None:
        if action is not None:
            action(body)

    handle.__annotations__["body"] = model
    return handle


@pytest.mark.parametrize(("model", "serializer"), CASES, ids=lambda v: getattr(v, "__name__", v))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_published_model_validates_back_into_an_equal_instance(
    model: type, serializer: str, data: st.DataObject
) -> None:
    sent = data.draw(MODELS[model][0])
    binding = bind(_handler_of(model))
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        subscription = broker.subscribe("typed")
        broker.publish("typed", sent)
        delivery = subscription.receive(timeout=1)
        assert delivery is not None
        (got,) = binding.arguments(delivery)
        delivery.ack()
    assert type(got) is model
    assert got == sent


@pytest.mark.parametrize(
    "sent",
    [
        Aliased(orderId=1, note="n"),
        Camel(orderId=2, customerName="c"),
        Computed(a=3),
        Strict(when=datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc), pair=(1, 2)),
        Counts({7: 1}),
    ],
    ids=lambda v: type(v).__name__,
)
def test_the_worker_hands_a_published_model_to_its_handler(sent: Any) -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        got: list[Any] = []
        worker.handler("typed")(_handler_of(type(sent), got.append))
        with worker.running():
            broker.publish("typed", sent)
            wait_until(
                lambda: got or broker.inspect("typed").dead_lettered,
                "the message handled or dead-lettered",
                within=DEADLINE,
            )
        assert dead_letters(broker, "typed") == []
        assert got == [sent]


def test_an_aliased_model_is_published_under_its_aliases_without_computed_fields() -> None:
    with brokerkit.connect("memory://") as broker:
        subscription = broker.subscribe("typed")
        broker.publish("typed", Camel(orderId=1, customerName="x"))
        broker.publish("typed", Computed(a=2))
        bodies = [subscription.receive(timeout=1).body for _ in range(2)]  # type: ignore[union-attr]
    assert bodies == [{"orderId": 1, "customerName": "x"}, {"a": 2}]


@pytest.mark.parametrize("model", [Strict, Counts])
def test_a_json_body_that_does_not_validate_is_still_dead_lettered_with_its_reason(
    model: type,
) -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        called = threading.Event()
        worker.handler("typed")(_handler_of(model, lambda body: called.set()))
        with worker.running():
            broker.publish("typed", {"x": 1})
            wait_until(
                lambda: broker.inspect("typed").dead_lettered == 1,
                "the dead letter",
                within=DEADLINE,
            )
        (dead,) = dead_letters(broker, "typed")
        reason = dead.headers["x-dead-letter-reason"]
        assert reason.startswith(f"invalid body: {model.__name__}: "), reason
        assert not called.is_set()


@pytest.mark.parametrize("model", [Strict, Counts])
def test_a_json_payload_that_does_not_parse_gets_the_decoders_own_reason(model: type) -> None:
    """As from another program: publish itself always writes JSON that parses."""
    binding = bind(_handler_of(model))
    with brokerkit.connect("memory://") as broker:
        subscription = broker.subscribe("typed")
        broker.publish("typed", {"x": 1})
        delivery = subscription.receive(timeout=DEADLINE)
        assert delivery is not None
        delivery.message = dataclasses.replace(delivery.message, payload=b"{not json")
        with pytest.raises(InvalidBody) as raised:
            binding.arguments(delivery)
    assert str(raised.value).startswith("cannot decode a application/json payload of 9 bytes")


def test_a_msgpack_body_validates_into_a_struct_with_lax_conversion() -> None:
    """msgpack carries a Struct's datetime as text: converted, not refused."""
    binding = bind(_handler_of(Renamed))
    sent = Renamed(order_id=1, when=datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc))
    with brokerkit.connect("memory://", serializer="msgpack") as broker:
        subscription = broker.subscribe("typed")
        broker.publish("typed", {"orderId": "5", "when": "2030-01-01T00:00:00Z"})
        broker.publish("typed", {"orderId": "five", "when": "2030-01-01T00:00:00Z"})
        first = subscription.receive(timeout=DEADLINE)
        second = subscription.receive(timeout=DEADLINE)
        assert first is not None and second is not None
        assert binding.arguments(first) == (Renamed(order_id=5, when=sent.when),)
        with pytest.raises(InvalidBody, match="Renamed: Expected `int`"):
            binding.arguments(second)
