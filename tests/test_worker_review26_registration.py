"""Registering handlers (twenty-sixth review of the worker): two handlers that read one
group under two spellings of it, body annotations that name a model without being its
class, and handlers that are callable objects or partials in a module with postponed
annotations."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Generic, NewType, Optional, TypeVar

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from tests.typed_bodies import handled, typed_handler
from tests.waiting import wait_until

#: Every wait in these tests polls with this deadline; none is a sleep.
DEADLINE = 10.0

# -- one group, two spellings ----------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(
    ("first", "second"), [(None, "default"), ("default", None)], ids=["none-first", "named-first"]
)
def test_no_group_and_the_default_group_are_one_group(
    flavour: str, first: str | None, second: str | None
) -> None:
    """The broker reads group=None as DEFAULT_GROUP: a second handler on the topic in
    it is refused, the error naming the group as the broker reads it."""
    worker: Any = brokerkit.Worker() if flavour == "sync" else brokerkit.aio.Worker()
    worker.handler("orders", group=first, name="one")(lambda body: None)
    with pytest.raises(
        brokerkit.InvalidOption,
        match=r"handlers one and two both read 'orders' in group 'default'; give one its own",
    ):
        worker.handler("orders", group=second, name="two")(lambda body: None)
    worker.handler("orders", group="audit", name="three")(lambda body: None)  # its own: fine
    assert [spec.name for spec in worker.handlers] == ["one", "three"]
    assert brokerkit.DEFAULT_GROUP == "default"


# -- callable objects and partials, their annotations postponed ------------------------


@dataclasses.dataclass
class Order:
    order_id: int


class OrderHandler:
    """A handler object: its ``__call__`` annotated in this module (whose annotations
    are postponed: strings to resolve here)."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, Any]] = []

    def __call__(self, order: Order, delivery: brokerkit.Delivery) -> None:
        self.got.append((order, delivery))


def handle_into(sink: list[Any], order: Order, delivery: brokerkit.Delivery, *, note: str) -> None:
    sink.append((order, delivery, note))


def handle_keyword(order: Order, delivery: brokerkit.Delivery, *, sink: Undefined) -> None:  # type: ignore[name-defined]  # noqa: F821
    """Its bound keyword's annotation resolves nowhere: the worker never passes it, so
    it is never looked at."""
    sink.append((order, delivery, "keyword"))


def _run_one(worker: brokerkit.Worker, broker: brokerkit.Broker, got: list[Any]) -> None:
    broker.publish("orders", {"order_id": 7})
    with worker.running():
        wait_until(lambda: got, "the handler's call", within=DEADLINE)
        wait_until(lambda: broker.inspect("orders").in_flight == 0, "the ack", within=DEADLINE)


def test_a_callable_object_in_a_module_of_postponed_annotations_gets_its_typed_body() -> None:
    handler = OrderHandler()
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("orders", name="object")(handler)
        _run_one(worker, broker, handler.got)
    ((order, delivery),) = handler.got
    assert order == Order(7)
    assert isinstance(delivery, brokerkit.Delivery)
    assert worker.stats()[0].processed == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda sink: functools.partial(handle_into, sink, note="positional"),
        lambda sink: functools.partial(functools.partial(handle_into, sink), note="nested"),
        lambda sink: functools.partial(handle_keyword, sink=sink),
    ],
    ids=["binds-the-first", "partial-of-a-partial", "binds-a-keyword"],
)
def test_a_partial_in_a_module_of_postponed_annotations_gets_its_typed_body(make: Any) -> None:
    """What the partial binds (a leading positional, a keyword) is no parameter of the
    handler: the body and the delivery are the two left, resolved in the module of the
    function it wraps."""
    got: list[Any] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("orders", name="partial")(make(got))
        (spec,) = worker.handlers
        assert (spec.binding.body_index, spec.binding.delivery_index) == (0, 1)
        assert spec.binding.body_type is Order
        _run_one(worker, broker, got)
    ((order, delivery, _),) = got
    assert order == Order(7)
    assert isinstance(delivery, brokerkit.Delivery)


def test_a_partial_whose_body_annotation_resolves_nowhere_is_still_refused() -> None:
    """The fallback still refuses what does not resolve in the wrapped function's module."""

    def local(order: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    worker = brokerkit.Worker()
    with pytest.raises(
        brokerkit.InvalidOption, match=r"'Missing' of parameter 'order'.*does not resolve"
    ):
        worker.handler("orders")(functools.partial(local))


# -- body annotations that name a model without being its class ------------------------

T = TypeVar("T")


@dataclasses.dataclass
class Box(Generic[T]):
    item: T


class StructBox(msgspec.Struct, Generic[T]):
    item: T


class Payment(pydantic.BaseModel):
    amount: int


class Refund(msgspec.Struct):
    amount: int


VipOrder = NewType("VipOrder", Order)
VipBox = NewType("VipBox", Box[int])
VipPayment = NewType("VipPayment", Payment)
VipRefund = NewType("VipRefund", Refund)
Orders = NewType("Orders", list[Order])


def test_a_generic_dataclass_body_is_built_by_its_class_its_type_variables_as_decoded() -> None:
    """``Box[int]`` is built as a field annotated ``Box[int]`` is: a Box, its item
    (typed by a type variable) as decoded; an object without the field does not fit."""
    for annotation in (Box[int], VipBox):
        got, reasons = handled(annotation, [{"item": 5}, {"thing": 5}])
        assert got == [Box(5)] and type(got[0]) is Box
        assert reasons == ["invalid body: Box: missing field(s) item; unknown field(s) thing"]


def test_a_generic_struct_body_is_validated_with_its_type_arguments() -> None:
    got, reasons = handled(StructBox[int], [{"item": 5}, {"item": "five"}])
    assert got == [StructBox(5)]
    (reason,) = reasons
    assert reason.startswith("invalid body: StructBox: Expected `int`, got `str`")


@pytest.mark.parametrize(
    ("annotation", "good", "bad", "model"),
    [
        (VipOrder, Order(1), Order, "Order"),
        (VipPayment, Payment(amount=1), Payment, "Payment"),
        (VipRefund, Refund(1), Refund, "Refund"),
    ],
    ids=["dataclass", "pydantic", "msgspec"],
)
def test_a_newtype_of_a_model_is_validated_into_the_model(
    annotation: Any, good: Any, bad: type, model: str
) -> None:
    """A NewType is its supertype at run time: the handler gets the model's instance."""
    field = "order_id" if bad is Order else "amount"
    got, reasons = handled(annotation, [{field: 1}, {"other": 1}])
    assert got == [good] and type(got[0]) is bad
    (reason,) = reasons
    assert reason.startswith(f"invalid body: {model}: ")


@pytest.mark.parametrize(
    ("annotation", "model"),
    [
        (Optional[VipOrder], "Order"),  # noqa: UP045 (the spelling under test)
        (list[VipOrder], "Order"),
        (list[Box[int]], "Box"),
        (dict[str, StructBox[int]], "StructBox"),
        (Orders, "Order"),
    ],
    ids=[
        "optional-newtype",
        "list-of-newtype",
        "list-of-generic",
        "dict-of-generic-struct",
        "newtype-of-list",
    ],
)
def test_an_annotation_holding_a_newtype_or_generic_model_is_refused(
    annotation: Any, model: str
) -> None:
    with pytest.raises(
        brokerkit.InvalidOption, match=f"which holds the model {model} without being one"
    ):
        brokerkit.Worker().handler("orders")(typed_handler(annotation))


@pytest.mark.parametrize("annotation", [Box[Payment], Box[list[Payment]]], ids=["model", "list"])
def test_a_generic_dataclass_holding_a_pydantic_model_is_refused(annotation: Any) -> None:
    """Its item would be built as decoded: the model in it never validated. (One
    holding a dataclass, ``Box[Order]``, has its item built as an Order since review
    27: see tests/test_worker_review27_generic_optional.py.)"""

    with pytest.raises(
        brokerkit.InvalidOption, match="a generic dataclass whose type arguments hold the model"
    ):
        brokerkit.Worker().handler("orders")(typed_handler(annotation))
