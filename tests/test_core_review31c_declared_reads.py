"""An invalid body's error text does not look at every pydantic model loaded each
time (review 31c).

The text of a validation error shows a step of a path only if a model declares it (a
dict's key, from the body, shows as ``*``), and it learnt the declared names by going
through every ``BaseModel`` subclass, taking a lock for each, for each error of the
text, at every text: with 2000 models loaded, a 5-error text took 12.8 ms instead of
36 us, and a publisher of invalid bodies had a worker burn its CPU. Now the names of
the models read are kept as one set; the models are looked at again only for a step
that set does not hold, once per text, and only if a model may have been made or
gone away since (or the error is of a model not seen since).

What is counted is the models looked at, not time: every lookup of a class in a set
or a dict hashes it, and the models here have a metaclass that counts that.
"""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from pydantic._internal._model_construction import ModelMetaclass

from brokerkit.worker._error_text import error_text

#: The models of this module that were hashed (looked up) while it counted.
HASHED: list[type] = []
COUNTING = [False]


class Counted(ModelMetaclass):
    def __hash__(cls) -> int:
        if COUNTING[0]:
            HASHED.append(cls)
        return type.__hash__(cls)


class Order(pydantic.BaseModel, metaclass=Counted):
    age: int
    tags: dict[str, int]


#: Other models loaded, as an application has.
OTHERS = [
    pydantic.create_model(
        f"Other{i}", __base__=Order, **{f"other_{i}_{j}": (int, 0) for j in range(5)}
    )
    for i in range(30)
]


def _invalid() -> pydantic.ValidationError:
    """A fresh error (its text is kept on it once read): a bad age, and bad values under
    three keys of the body's own."""
    with pytest.raises(pydantic.ValidationError) as raised:
        Order.model_validate({"age": "x", "tags": {"k1": "a", "k2": "b", "k3": "c"}})
    return raised.value


def _counted_text() -> tuple[str, list[type]]:
    exc = _invalid()
    HASHED.clear()
    COUNTING[0] = True
    try:
        text = error_text(exc)
    finally:
        COUNTING[0] = False
    return text, list(HASHED)


EXPECTED = (
    "Order: 4 errors: age: Input should be a valid integer, unable to parse string as an "
    "integer [int_parsing]; tags.*: Input should be a valid integer, unable to parse "
    "string as an integer [int_parsing]; tags.*: Input should be a valid integer, unable "
    "to parse string as an integer [int_parsing]; tags.*: Input should be a valid "
    "integer, unable to parse string as an integer [int_parsing]"
)


def test_the_next_text_of_an_invalid_body_looks_at_no_model() -> None:
    first, _ = _counted_text()
    second, _ = _counted_text()  # (anything a first text loads is loaded now)
    assert first == second == EXPECTED
    third, hashed = _counted_text()
    assert third == EXPECTED
    assert hashed == [], f"{len(hashed)} lookups of the {len(OTHERS) + 1} models"


def test_a_model_made_since_is_seen() -> None:
    _counted_text()

    class Later(Order):  # neither a new module nor right under BaseModel: a new title
        made_later: dict[str, int]

    with pytest.raises(pydantic.ValidationError) as raised:
        Later.model_validate({"age": 1, "tags": {}, "made_later": {"secret": "x"}})
    assert error_text(raised.value) == (
        "Later: made_later.*: Input should be a valid integer, unable to parse string as "
        "an integer [int_parsing]"
    )


def test_a_model_built_since_is_seen() -> None:
    class Pending(pydantic.BaseModel):
        inner: Inner  # not defined yet: built when it is

    _counted_text()

    class Inner(pydantic.BaseModel):
        built_later: int

    Pending.model_rebuild(_types_namespace={"Inner": Inner})
    with pytest.raises(pydantic.ValidationError) as raised:
        Pending.model_validate({"inner": {"built_later": "x"}})
    assert error_text(raised.value) == (
        "Pending: inner.built_later: Input should be a valid integer, unable to parse "
        "string as an integer [int_parsing]"
    )


def test_a_step_no_model_declares_is_hidden_every_time() -> None:
    for _ in range(3):
        with pytest.raises(pydantic.ValidationError) as raised:
            Order.model_validate({"age": 1, "tags": {"hunter2": "x"}})
        text: Any = error_text(raised.value)
        assert "hunter2" not in text and "tags.*" in text
