"""Handlers whose body is typed, for the worker's typed-body tests: a handler annotated
with any annotation, the run of one over bodies published on memory:// (what it got,
and the reasons of those dead-lettered), its registration refused, and the models
those tests share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
import pydantic
import pytest

import brokerkit
import brokerkit.aio
from tests.waiting import wait_until

__all__ = [
    "HoldsLine",
    "Item",
    "Line",
    "Piece",
    "Plain",
    "handled",
    "refusal",
    "run_typed",
    "typed_handler",
]

#: Every wait here polls with this deadline; none is a sleep.
DEADLINE = 20.0


class Line(pydantic.BaseModel):
    sku: str


class Plain:
    """A class msgspec does not know."""

    def __init__(self, sku: str) -> None:
        self.sku = sku


@dataclasses.dataclass
class Item:
    sku: str


@dataclasses.dataclass
class HoldsLine:
    """A dataclass msgspec builds, but for its field."""

    line: Line


class Piece(msgspec.Struct):
    sku: str


def typed_handler(annotation: Any, sink: list[Any] | None = None) -> Callable[[Any], None]:
    """A handler whose body is annotated ``annotation``: it appends each body to
    ``sink``, or, without one, must never be called."""

    def job(body: Any) -> None:
        if sink is None:
            raise AssertionError("never called")
        sink.append(body)

    job.__annotations__["body"] = annotation
    return job


def run_typed(
    annotation: Any, bodies: list[Any], *, topic: str = "jobs"
) -> tuple[list[Any], list[str], brokerkit.Worker]:
    """What a handler whose body is annotated ``annotation`` gets from ``bodies``
    published as JSON on memory:// (on ``topic``), the reasons of those dead-lettered,
    and the worker that ran it (stopped)."""
    got: list[Any] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler(topic)(typed_handler(annotation, got))
        broker.publish_many(topic, bodies)
        with worker.running():
            wait_until(
                lambda: (
                    worker.stats()[0].processed + worker.stats()[0].dead_lettered == len(bodies)
                ),
                "every body handled or dead-lettered",
                within=DEADLINE,
            )
        dead = list(broker.consume(broker.dead_letter_topic(topic), timeout=0))
        for delivery in dead:
            delivery.ack()
    return got, [d.headers["x-dead-letter-reason"] for d in dead], worker


def handled(
    annotation: Any, bodies: list[Any], *, topic: str = "jobs"
) -> tuple[list[Any], list[str]]:
    """:func:`run_typed`'s bodies handled and reasons of those dead-lettered."""
    got, reasons, _ = run_typed(annotation, bodies, topic=topic)
    return got, reasons


def refusal(annotation: Any, flavour: str = "sync") -> tuple[str, Any]:
    """The text of the InvalidOption with which a worker (``flavour`` "sync" or
    "async") refuses a handler whose body is annotated ``annotation``, and the worker."""
    worker: Any = brokerkit.Worker() if flavour == "sync" else brokerkit.aio.Worker()
    with pytest.raises(brokerkit.InvalidOption) as refused:
        worker.handler("jobs")(typed_handler(annotation))
    return str(refused.value), worker
