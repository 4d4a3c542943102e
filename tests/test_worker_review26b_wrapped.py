"""A handler wrapped by a decorator from another module, its annotations postponed
(review 26b, item 2): the worker reads its parameters as ``inspect.signature`` does,
through ``__wrapped__``, so their string annotations resolve in the wrapped function's
module, not the decorator's. A class-based decorator (``functools.update_wrapper`` on
an instance) was read through the decorator's own ``__call__``: a NameError refused the
handler, or a same-named class of the decorator's module was silently the body type.
A function decorator (``functools.wraps``) went the same way whenever one of the
handler's annotations did not resolve (a return type imported for type checking only)."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import brokerkit
from tests.waiting import wait_until

#: The decorators, in a module of their own; ``same_name`` adds a class called as the
#: handler's body type is, which the handler's annotation must not name.
DECORATORS = '''
import functools

class timed:
    """A class-based decorator, as libraries write them."""

    def __init__(self, func):
        functools.update_wrapper(self, func)
        self.func = func

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)


def logged(func):
    """A function decorator."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper
'''

SAME_NAME = '''
import dataclasses

@dataclasses.dataclass
class Order:
    """Not the handler's Order."""

    sku: str
'''

#: The handlers, in a module with postponed annotations; ``{decorators}`` is the name
#: of the module above.
HANDLERS = """
from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import brokerkit
from {decorators} import logged, timed

if TYPE_CHECKING:
    from collections.abc import Sequence  # not there at run time


@dataclasses.dataclass
class Order:
    order_id: int


got = []


@timed
def by_class(order: Order) -> None:
    got.append(order)


@timed
def by_class_with_delivery(order: Order, delivery: brokerkit.Delivery) -> None:
    got.append((order, delivery.attempt))


@logged
def by_function(order: Order) -> Sequence[int]:
    got.append(order)
    return []


def labelled(order: Order, label: str) -> None:
    got.append((order, label))


partial_of_wrapped = functools.partial(timed(labelled), label="x")
wrapped_partial = timed(functools.partial(labelled, label="x"))
"""


@pytest.fixture(params=["elsewhere", "same-name"])
def handlers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModuleType]:
    """The handlers' module, imported from files (the decorators' module defining its
    own ``Order``, or not)."""
    tag = uuid.uuid4().hex[:8]
    decorators, handlers = f"w26b_decorators_{tag}", f"w26b_handlers_{tag}"
    source = DECORATORS + (SAME_NAME if request.param == "same-name" else "")
    (tmp_path / f"{decorators}.py").write_text(textwrap.dedent(source))
    (tmp_path / f"{handlers}.py").write_text(HANDLERS.format(decorators=decorators))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(handlers)
    finally:
        sys.path.remove(str(tmp_path))
        for name in (handlers, decorators):
            sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "handler",
    ["by_class", "by_class_with_delivery", "by_function", "partial_of_wrapped", "wrapped_partial"],
)
def test_a_wrapped_handlers_annotations_resolve_in_its_own_module(
    handlers: ModuleType, handler: str
) -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("orders")(getattr(handlers, handler))
        (spec,) = worker.handlers
        assert spec.binding.body_type is handlers.Order
        broker.publish("orders", {"order_id": 7})
        with worker.running():
            wait_until(lambda: handlers.got, "the handler's call")
        assert worker.stats()[0].processed == 1
    (got,) = handlers.got
    order = got[0] if isinstance(got, tuple) else got
    assert order == handlers.Order(order_id=7)
