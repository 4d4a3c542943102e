"""A msgspec Struct held by a dataclass body gets the registration check a Struct
body gets (review 27b, item 2): one holding a type msgspec cannot build (a pydantic
model, a plain class) was accepted in a dataclass field, or as a generic dataclass's
type argument (``Box[S]``), and then every message was dead-lettered ("Expected
`PydLine`, got `dict`"). It is refused at registration, naming the dataclass's field,
the Struct's field and the type; a Struct msgspec builds is still accepted and
validated."""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, Optional, TypeVar

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from tests.typed_bodies import refusal
from tests.waiting import wait_until

T = TypeVar("T")


class PydLine(pydantic.BaseModel):
    sku: str


class Holds(msgspec.Struct):
    line: PydLine


class Fine(msgspec.Struct):
    sku: str


class SBox(msgspec.Struct, Generic[T]):
    item: T


@dataclasses.dataclass
class Outer:
    s: Holds


@dataclasses.dataclass
class Many:
    items: list[Optional[Holds]]  # noqa: UP045


@dataclasses.dataclass
class Box(Generic[T]):
    item: T


@dataclasses.dataclass
class Deep:
    """The Struct two dataclasses down."""

    outer: Outer


@dataclasses.dataclass
class GenericStructField:
    box: SBox[PydLine]


@pytest.mark.parametrize(
    ("annotation", "where", "struct", "held_where"),
    [
        (Outer, "field 's' of dataclass Outer is annotated Holds:", "Holds", "'line' of Holds"),
        (Many, "field 'items' of dataclass Many is annotated", "Holds", "'line' of Holds"),
        (Box[Holds], "field 'item' of dataclass Box (as ", "Holds", "'line' of Holds"),
        (Deep, "field 's' of dataclass Outer", "Holds", "'line' of Holds"),
        (GenericStructField, "field 'box' of dataclass GenericStructField", "SBox", "'item'"),
    ],
    ids=["field", "list-of-optional", "type-argument", "nested", "generic-struct"],
)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_struct_msgspec_cannot_build_in_a_dataclass_body_is_refused(
    annotation: Any, where: str, struct: str, held_where: str, flavour: str
) -> None:
    text, worker = refusal(annotation, flavour)
    assert where in text, text
    assert f"is a msgspec Struct whose field {held_where}" in text, text
    assert "holds PydLine (a pydantic model), which msgspec cannot build" in text, text
    assert "Make PydLine a msgspec Struct or a dataclass" in text, text
    assert struct in text
    assert worker.handlers == []


@dataclasses.dataclass
class Good:
    s: Fine
    more: list[Fine] = dataclasses.field(default_factory=list)


def test_a_struct_msgspec_builds_in_a_dataclass_is_accepted_and_validated() -> None:
    got: list[Any] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("jobs")
        def job(body: Good) -> None:
            got.append(body)

        @worker.handler("boxes")
        def box(body: Box[Fine]) -> None:
            got.append(body)

        broker.publish("jobs", {"s": {"sku": "a"}, "more": [{"sku": "b"}]})
        broker.publish("boxes", {"item": {"sku": "c"}})
        with worker.running():
            wait_until(lambda: len(got) == 2, "both handlers' calls", within=20)
    assert sorted(got, key=repr) == sorted([Good(Fine("a"), [Fine("b")]), Box(Fine("c"))], key=repr)
