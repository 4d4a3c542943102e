"""A body annotated with a (non-generic) msgspec Struct one of whose fields, at any
depth, holds a type msgspec cannot build from a message (review 27, item 1): a pydantic
model, a class msgspec does not know, an annotation that does not resolve. It was
accepted at registration, and then every valid message was dead-lettered ("Order:
Expected `Line`, got `dict` - at `$.line`"); the same thing in a generic Struct's type
arguments was refused. It is refused at registration too, naming the field and the
type; a Struct whose fields msgspec builds is validated as before."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Generic, NewType, Optional, TypeVar

import msgspec
import pytest

import brokerkit
import brokerkit.aio
from tests.typed_bodies import HoldsLine, Item, Line, Piece, Plain, refusal, run_typed

T = TypeVar("T")


class Order(msgspec.Struct):
    line: Line


class Orders(msgspec.Struct):
    number: int
    lines: list[Line]


class MaybeOrder(msgspec.Struct):
    line: Optional[Line] = None  # noqa: UP045 (the spelling under test)


class Keyed(msgspec.Struct):
    lines: dict[str, Line]


class Inner(msgspec.Struct):
    line: Line


class Outer(msgspec.Struct):
    inner: Inner


class ViaDataclass(msgspec.Struct):
    held: HoldsLine


class PlainField(msgspec.Struct):
    thing: Plain


class Box(msgspec.Struct, Generic[T]):
    """A generic Struct whose field not typed by its type variable holds a model."""

    item: T
    line: Line


class Unresolved(msgspec.Struct):
    thing: Missing  # type: ignore[name-defined]  # noqa: F821 (never defined)


VipOrder = NewType("VipOrder", Order)


@pytest.mark.parametrize(
    ("annotation", "where", "held", "kind"),
    [
        (Order, "field 'line' of Order", "Line", "a pydantic model"),
        (Orders, "field 'lines' of Orders", "Line", "a pydantic model"),
        (MaybeOrder, "field 'line' of MaybeOrder", "Line", "a pydantic model"),
        (Keyed, "field 'lines' of Keyed", "Line", "a pydantic model"),
        (Outer, "field 'line' of Inner", "Line", "a pydantic model"),
        (ViaDataclass, "field 'line' of HoldsLine", "Line", "a pydantic model"),
        (PlainField, "field 'thing' of PlainField", "Plain", "a class msgspec does not know"),
        (Box[int], "field 'line' of Box", "Line", "a pydantic model"),
        (Annotated[Order, "note"], "field 'line' of Order", "Line", "a pydantic model"),
        (VipOrder, "field 'line' of Order", "Line", "a pydantic model"),
    ],
    ids=[
        "model",
        "list-of-model",
        "optional-model",
        "dict-of-model",
        "nested-struct",
        "dataclass-holding-model",
        "plain-class",
        "generic-struct-own-field",
        "annotated",
        "newtype",
    ],
)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_struct_with_a_field_msgspec_cannot_build_is_refused(
    annotation: Any, where: str, held: str, kind: str, flavour: str
) -> None:
    text, worker = refusal(annotation, flavour)
    assert f"with {annotation!r}, a " in text
    assert f"msgspec Struct whose {where} holds {held} ({kind})" in text
    assert "which msgspec cannot build from a message" in text
    assert f"Make {held} a msgspec Struct or a dataclass" in text
    assert worker.handlers == []


def test_a_struct_whose_annotation_does_not_resolve_is_refused() -> None:
    def job(body: Unresolved) -> None:
        raise AssertionError("never called")

    worker = brokerkit.Worker()
    with pytest.raises(brokerkit.InvalidOption) as refused:
        worker.handler("jobs")(job)
    text = str(refused.value)
    assert "a msgspec Struct msgspec cannot read (NameError: " in text
    assert "Missing" in text
    assert worker.handlers == []


class Fine(msgspec.Struct):
    item: Item
    piece: Piece
    pieces: list[Piece]
    day: datetime.date
    extra: Any = None


def test_a_struct_whose_fields_msgspec_builds_is_validated() -> None:
    body = {
        "item": {"sku": "a"},
        "piece": {"sku": "b"},
        "pieces": [{"sku": "c"}],
        "day": "2026-12-06",
        "extra": {"k": 1},
    }
    got, _, worker = run_typed(Fine, [body])
    assert worker.stats()[0].processed == 1
    assert got == [
        Fine(
            item=Item("a"),
            piece=Piece("b"),
            pieces=[Piece("c")],
            day=datetime.date(2026, 12, 6),
            extra={"k": 1},
        )
    ]
