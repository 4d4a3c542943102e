"""A pydantic model reached through a type variable is refused wherever the type
arguments are written (review 29, the open item "a pydantic model reached through a
non-generic base is taken as decoded"): the body ``Box[Line]`` was refused (a
dataclass's field of a pydantic model is taken as decoded), but ``class
LineBox(Box[Line])``, a field ``box: Box[Line]`` or ``list[Box[Line]]``, and a field
``box: LineBox`` were accepted, and ``item`` reached the handler as a dict. A pydantic
model subclassing another (non-generic) model is validated as itself, as before.

A dataclass field annotated with a pydantic model directly (``line: Line``,
``list[Line]``, ``Line | None``), at any depth, is refused the same way, for the same
reason: it was accepted and reached the handler as a dict, whatever its annotation
said."""

from __future__ import annotations

import dataclasses
import threading
from typing import Annotated, Any, Generic, Optional, TypeVar

import pydantic
import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption

T = TypeVar("T")


class Line(pydantic.BaseModel):
    sku: str
    quantity: int


@dataclasses.dataclass
class Box(Generic[T]):
    item: T


class LineBox(Box[Line]):
    pass


@dataclasses.dataclass
class NotedLineBox(Box[Optional[Line]]):  # noqa: UP045 (typing's spelling on purpose)
    note: str = ""


@dataclasses.dataclass
class Parcel:
    box: Box[Line]


@dataclasses.dataclass
class Crate:
    box: LineBox


@dataclasses.dataclass
class Pallet:
    boxes: list[Box[list[Line]]]


@pytest.mark.parametrize("worker_type", [brokerkit.Worker, brokerkit.aio.Worker])
@pytest.mark.parametrize(
    ("body_type", "field"),
    [
        (LineBox, "field 'item' of dataclass LineBox is annotated T in its base Box"),
        (NotedLineBox, "field 'item' of dataclass NotedLineBox is annotated T in its base Box"),
        (Parcel, r"field 'item' of dataclass Box \(as .*Box\[.*Line\]\) is annotated T,"),
        (Crate, "field 'item' of dataclass LineBox is annotated T in its base Box"),
        (Pallet, r"field 'item' of dataclass Box \(as .*\) is annotated T, which the type"),
    ],
    ids=["base", "optional-base", "field", "field-of-subclass", "list-field"],
)
def test_a_pydantic_model_reached_through_a_type_variable_is_refused(
    worker_type: Any, body_type: Any, field: str
) -> None:
    def handle(body: Any) -> None: ...

    handle.__annotations__["body"] = body_type
    worker = worker_type()
    with pytest.raises(InvalidOption, match=field) as refused:
        worker.handler("orders")(handle)
    assert "so Line would reach the handler unvalidated" in str(refused.value)


class Base(pydantic.BaseModel):
    order_id: int


class Refund(Base):
    amount: int


def test_a_pydantic_model_derived_from_a_plain_model_is_validated_as_itself() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        got: list[object] = []
        done = threading.Event()

        @worker.handler("refunds")
        def refund(body: Refund) -> None:
            got.append(body)
            done.set()

        with worker.running():
            broker.publish("refunds", {"order_id": 1, "amount": "5"})
            assert done.wait(10)
    assert got == [Refund(order_id=1, amount=5)] and type(got[0]) is Refund


@dataclasses.dataclass
class Order:
    line: Line


@dataclasses.dataclass
class Basket:
    lines: list[Line]


@dataclasses.dataclass
class MaybeLine:
    line: Optional[Line] = None  # noqa: UP045 (typing's spelling on purpose)


@dataclasses.dataclass
class ByName:
    lines: dict[str, Annotated[Line, "noted"]]


@dataclasses.dataclass
class Shipment:
    order: Order


@dataclasses.dataclass
class Receipt(Order):
    total: int = 0


@pytest.mark.parametrize("worker_type", [brokerkit.Worker, brokerkit.aio.Worker])
@pytest.mark.parametrize(
    ("body_type", "field"),
    [
        (Order, "field 'line' of dataclass Order is annotated Line:"),
        (Basket, r"field 'lines' of dataclass Basket is annotated list\[.*Line\]:"),
        (MaybeLine, "field 'line' of dataclass MaybeLine is annotated .*Optional"),
        (ByName, "field 'lines' of dataclass ByName is annotated dict"),
        (Shipment, "field 'line' of dataclass Order is annotated Line:"),
        (Receipt, "field 'line' of dataclass Receipt is annotated Line in its base Order:"),
    ],
    ids=["field", "list", "optional", "dict-annotated", "nested", "inherited"],
)
def test_a_field_annotated_with_a_pydantic_model_is_refused(
    worker_type: Any, body_type: Any, field: str
) -> None:
    def handle(body: Any) -> None: ...

    handle.__annotations__["body"] = body_type
    worker = worker_type()
    with pytest.raises(InvalidOption, match=field) as refused:
        worker.handler("orders")(handle)
    assert "so Line would reach the handler unvalidated" in str(refused.value)
    assert "annotate the field with a type taken as decoded" in str(refused.value)


@dataclasses.dataclass
class RawOrder:
    line: dict[str, Any]


def test_a_field_taken_as_decoded_still_gets_the_data() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        got: list[object] = []
        done = threading.Event()

        @worker.handler("orders")
        def order(body: RawOrder) -> None:
            got.append(Line.model_validate(body.line))
            done.set()

        with worker.running():
            broker.publish("orders", {"line": {"sku": "a", "quantity": "2"}})
            assert done.wait(10)
    assert got == [Line(sku="a", quantity=2)]
