"""Registration mistakes a dramatiq or Celery user makes fail at once, naming what is
wrong and what is valid (review 29): ``@worker.handler`` left bare (dramatiq's
``@actor`` and Celery's ``@app.task`` work bare) took the function for the topic and
returned the inner decorator, so the handler was silently never registered and its
name was rebound to that decorator; ``retry=Fixed`` (the class) was refused as "got
type"; a ``name`` that is no str was taken."""

from __future__ import annotations

from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption
from brokerkit.worker import Fixed


@pytest.fixture(params=["sync", "asyncio"])
def worker(request: pytest.FixtureRequest) -> Any:
    if request.param == "sync":
        return brokerkit.Worker()
    return brokerkit.aio.Worker()


def test_a_bare_handler_decorator_is_refused_naming_the_topic(worker: Any) -> None:
    def send_receipt(order: dict[str, Any]) -> None: ...

    with pytest.raises(InvalidOption, match=r"takes the topic first.*'orders'") as raised:
        worker.handler(send_receipt)
    assert "send_receipt" in str(raised.value)
    assert worker.handlers == []


def test_a_retry_policy_class_is_refused_asking_for_an_instance(worker: Any) -> None:
    with pytest.raises(
        InvalidOption, match=r"the class Fixed: pass an instance, such as Fixed\(\)"
    ):
        worker.handler("orders", retry=Fixed)


@pytest.mark.parametrize("name", [5, ""])
def test_a_name_that_is_no_str_is_refused(worker: Any, name: object) -> None:
    with pytest.raises(InvalidOption, match="name must be a non-empty str"):
        worker.handler("orders", name=name)


def test_the_options_are_checked_before_the_function_is_given(worker: Any) -> None:
    with pytest.raises(InvalidOption, match="concurrency must be a whole number"):
        worker.handler("orders", concurrency=0)
    with pytest.raises(brokerkit.InvalidTopic):
        worker.handler("")
