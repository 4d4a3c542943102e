"""A handler that takes only ``*args``/``**kwargs`` is refused at registration
(review 29): the worker reads what a handler takes from its named parameters, so it
called such a handler with nothing. A decorator's wrapper written without
``functools.wraps`` (the common case) then called the handler without its body: every
message failed with "missing 1 required positional argument" and was retried until
dead-lettered; a ``def handle(*args)`` got no body and acked every message."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption
from tests.waiting import wait_until


def unwrapped(function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:  # no functools.wraps
        return function(*args, **kwargs)

    return wrapper


def order_handler(order: dict[str, Any]) -> None: ...


def only_args(*args: Any) -> None: ...


def only_kwargs(**options: Any) -> None: ...


@pytest.mark.parametrize("worker_type", [brokerkit.Worker, brokerkit.aio.Worker])
@pytest.mark.parametrize(
    ("handler", "takes"),
    [
        (unwrapped(order_handler), r"\*args, \*\*kwargs"),
        (only_args, r"\*args"),
        (only_kwargs, r"\*\*options"),
    ],
)
def test_a_handler_taking_only_catch_alls_is_refused(
    worker_type: Any, handler: Callable[..., Any], takes: str
) -> None:
    worker = worker_type()
    with pytest.raises(InvalidOption, match=rf"takes only {takes}: .*functools\.wraps"):
        worker.handler("orders")(handler)
    assert worker.handlers == []


def test_named_parameters_beside_catch_alls_and_none_at_all_are_served() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        got: list[object] = []
        done = threading.Event()

        @worker.handler("orders")
        def with_extras(order: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            got.append((order, args, kwargs))

        @worker.handler("ticks")
        def tick() -> None:
            done.set()

        with worker.running():
            broker.publish("orders", {"id": 1})
            broker.publish("ticks", None)
            assert done.wait(10)
            wait_until(lambda: got, "the order handler")
        assert got == [({"id": 1}, (), {})]
