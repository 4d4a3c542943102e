"""A body annotated with a parametrized generic msgspec Struct whose type arguments hold
a type msgspec cannot build (review 26b, item 3): ``Box[Line]``, ``Line`` a pydantic
model, was accepted at registration, and then every valid message was dead-lettered
("Box: Expected `Line`, got `dict`"). It is refused at registration; type arguments
msgspec builds (a dataclass, a Struct, builtins, datetime) are validated as before."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Generic, NewType, Optional, TypeVar

import msgspec
import pytest

from tests.typed_bodies import HoldsLine, Item, Line, Piece, Plain, refusal, run_typed

T = TypeVar("T")


class Box(msgspec.Struct, Generic[T]):
    item: T


BoxOfLines = NewType("BoxOfLines", Box[Line])


@pytest.mark.parametrize(
    ("annotation", "held", "kind"),
    [
        (Box[Line], "Line", "a pydantic model"),
        (Box[list[Line]], "Line", "a pydantic model"),
        (Box[Optional[Line]], "Line", "a pydantic model"),  # noqa: UP045
        (Box[dict[str, Line]], "Line", "a pydantic model"),
        (Box[HoldsLine], "Line", "a pydantic model"),
        (Box[Box[Line]], "Line", "a pydantic model"),
        (Annotated[Box[Line], "note"], "Line", "a pydantic model"),
        (BoxOfLines, "Line", "a pydantic model"),
        (Box[Plain], "Plain", "a class msgspec does not know"),
    ],
    ids=[
        "model",
        "list-of-model",
        "optional-model",
        "dict-of-model",
        "dataclass-holding-model",
        "box-of-box-of-model",
        "annotated",
        "newtype",
        "plain-class",
    ],
)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_generic_struct_of_what_msgspec_cannot_build_is_refused(
    annotation: Any, held: str, kind: str, flavour: str
) -> None:
    text, worker = refusal(annotation, flavour)
    assert f"with {annotation!r}, a generic msgspec Struct" in text
    assert f"holds {held} ({kind}), which msgspec cannot build" in text
    assert worker.handlers == []


@pytest.mark.parametrize(
    ("annotation", "body", "expected"),
    [
        (Box[Item], {"item": {"sku": "a"}}, Box(item=Item(sku="a"))),
        (Box[Piece], {"item": {"sku": "a"}}, Box(item=Piece(sku="a"))),
        (Box[list[Item]], {"item": [{"sku": "a"}]}, Box(item=[Item(sku="a")])),
        (Box[int], {"item": 3}, Box(item=3)),
        (
            Box[datetime.date],
            {"item": "2026-12-06"},
            Box(item=datetime.date(2026, 12, 6)),
        ),
        (Box[Any], {"item": {"sku": "a"}}, Box(item={"sku": "a"})),
    ],
    ids=["dataclass", "struct", "list-of-dataclass", "int", "date", "any"],
)
def test_a_generic_struct_of_what_msgspec_builds_is_validated(
    annotation: Any, body: Any, expected: Any
) -> None:
    got, _, worker = run_typed(annotation, [body])
    assert worker.stats()[0].processed == 1
    assert got == [expected]
