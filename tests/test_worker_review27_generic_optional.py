"""A body annotated with a generic msgspec Struct or dataclass parametrized with an
Optional of a Struct or a dataclass, ``Box[Line | None]`` (review 27, item 2). A
generic dataclass was refused at registration whatever its type arguments held
("brokerkit builds its fields of a type variable as decoded"); its fields typed by a
type variable are now built with the type arguments given (``item: T`` of
``Box[Line | None]`` as ``Line | None``), so it is accepted and the handler gets a
``Box`` holding a ``Line``, or None. A generic Struct was accepted and validated by
msgspec already: proved here end to end. A pydantic model in a generic dataclass's
type arguments is still refused (a dataclass's field of a pydantic model is taken as
decoded)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Generic, Optional, TypeVar

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from tests.typed_bodies import handled, typed_handler

T = TypeVar("T")


class Line(msgspec.Struct):
    sku: str


@dataclasses.dataclass
class DataLine:
    sku: str


class PydanticLine(pydantic.BaseModel):
    sku: str


class Box(msgspec.Struct, Generic[T]):
    item: T


@dataclasses.dataclass
class DataBox(Generic[T]):
    item: T
    items: list[T] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Order:
    """A plain dataclass whose field is such a generic dataclass."""

    box: DataBox[DataLine | None]


@pytest.mark.parametrize(
    ("annotation", "line"),
    [
        (Box[Line | None], Line),
        (Box[Optional[Line]], Line),  # noqa: UP045 (the spelling under test)
        (Box[DataLine | None], DataLine),
        (DataBox[DataLine | None], DataLine),
        (DataBox[Optional[DataLine]], DataLine),  # noqa: UP045
        (DataBox[Line | None], Line),
    ],
    ids=[
        "struct-of-struct",
        "struct-of-struct-optional",
        "struct-of-dataclass",
        "dataclass-of-dataclass",
        "dataclass-of-dataclass-optional",
        "dataclass-of-struct",
    ],
)
def test_a_generic_box_of_an_optional_line_is_accepted_and_built(
    annotation: Any, line: type
) -> None:
    box = Box if typing.get_origin(annotation) is Box else DataBox
    got, reasons = handled(annotation, [{"item": {"sku": "a"}}, {"item": None}])
    assert reasons == []
    assert got == [box(item=line(sku="a")), box(item=None)]
    assert type(got[0]) is box and type(got[0].item) is line


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_both_workers_accept_it(flavour: str) -> None:
    def job(body: DataBox[DataLine | None]) -> None: ...

    worker: Any = brokerkit.Worker() if flavour == "sync" else brokerkit.aio.Worker()
    worker.handler("jobs")(job)
    assert len(worker.handlers) == 1


def test_the_type_arguments_build_every_field_of_the_type_variable() -> None:
    got, reasons = handled(
        DataBox[DataLine],
        [
            {"item": {"sku": "a"}, "items": [{"sku": "b"}]},
            {"item": {"sku": "a"}, "items": [{"sku": "b"}, {"thing": 1}]},
        ],
    )
    assert got == [DataBox(item=DataLine("a"), items=[DataLine("b")])]
    assert reasons == [
        "invalid body: DataBox: missing field(s) sku; unknown field(s) thing at $.items[1]"
    ]


def test_a_body_that_does_not_fit_the_type_argument_is_dead_lettered_with_where() -> None:
    got, reasons = handled(DataBox[Line | None], [{"item": {"sku": 5}}])
    assert got == []
    (reason,) = reasons
    assert reason.startswith("invalid body: DataBox: Expected `str`, got `int`"), reason
    assert reason.endswith(" at $.item.sku"), reason


def test_a_field_of_such_a_generic_dataclass_is_built() -> None:
    got, reasons = handled(Order, [{"box": {"item": {"sku": "a"}}}, {"box": {"item": None}}])
    assert reasons == []
    assert got == [Order(DataBox(item=DataLine("a"))), Order(DataBox(item=None))]


@dataclasses.dataclass
class Shipment:
    """A plain dataclass whose field is a msgspec Struct: validated by msgspec, as a
    type argument of a generic dataclass is (it was taken as decoded: a dict)."""

    line: Line


def test_a_struct_field_of_a_dataclass_is_validated() -> None:
    got, reasons = handled(Shipment, [{"line": {"sku": "a"}}, {"line": {"sku": 5}}])
    assert got == [Shipment(Line("a"))] and type(got[0].line) is Line
    assert reasons == ["invalid body: Shipment: Expected `str`, got `int` at $.line.sku"]


@pytest.mark.parametrize(
    "annotation",
    [DataBox[PydanticLine | None], DataBox[list[PydanticLine]]],
    ids=["optional", "list"],
)
def test_a_generic_dataclass_of_a_pydantic_model_is_still_refused(annotation: Any) -> None:
    with pytest.raises(
        brokerkit.InvalidOption,
        match="a generic dataclass whose type arguments hold the model PydanticLine",
    ):
        brokerkit.Worker().handler("jobs")(typed_handler(annotation))
