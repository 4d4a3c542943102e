"""Registering handlers (twenty-sixth review of the worker): two handlers that read one
group under two spellings of it, body annotations that name a model without being its
class, and handlers that are callable objects or partials in a module with postponed
annotations."""

from __future__ import annotations

from typing import Any

import pytest

import brokerkit
import brokerkit.aio

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
