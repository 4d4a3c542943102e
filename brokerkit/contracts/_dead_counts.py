"""What the contract tests of ``inspect(topic).dead_lettered`` accept: the exact count,
or, where the docs make it an upper bound, no more than every dead letter stored."""

from __future__ import annotations

import time
from collections.abc import Sequence

from brokerkit._broker import Broker
from brokerkit._inspect import DEAD_LETTER_GROUPS, GroupInfo
from brokerkit._subscription import Subscription
from brokerkit.contracts._harness import ContractEnv

__all__ = ["dead_lettered_bound", "settled_dead_lettered"]


def dead_lettered_bound(broker: Broker, topic: str) -> int | None:
    """The dead letters ``topic``'s dead-letter topic stores where ``dead_lettered``
    is documented as an upper bound (:attr:`~brokerkit.TopicInfo.dead_lettered`): the
    backend says of a group that deals with dead letters
    (:data:`~brokerkit._inspect.DEAD_LETTER_GROUPS`) that it cannot tell its lag
    cheaply (see :func:`_lag_untold`). Else None: the count must be exact."""
    info = broker.inspect(broker.dead_letter_topic(topic))
    untold = any(g.name in DEAD_LETTER_GROUPS and _lag_untold(g) for g in info.groups)
    return info.length if untold else None


def _lag_untold(group: GroupInfo) -> bool:
    """Whether the backend declares that it cannot tell ``group``'s lag cheaply, in
    fields a plain :class:`~brokerkit.GroupInfo` does not have: ``entries_read`` None
    (a Redis stream's group on a server that gives no lag, Redis 6.2: the lag shown
    was counted by reading the entries) or ``lag_exact`` False (a lag counted only so
    far). A ``lag`` of None is no such declaration: it is ``GroupInfo``'s default, what
    a backend that never fills it in reports."""
    untold_read = getattr(group, "entries_read", 0) is None
    return untold_read or getattr(group, "lag_exact", True) is False


def settled_dead_lettered(
    contract: ContractEnv,
    broker: Broker,
    topic: str,
    exact: int,
    watch: Subscription | Sequence[Subscription],
    stray: str,
) -> tuple[int, int | None]:
    """``inspect(topic).dead_lettered`` once it reads ``exact`` (or, where it is an
    upper bound, no less than ``exact`` and no more than the bound), or when the grace
    runs out: a server may dead-letter, and count acks, on its own time (RabbitMQ,
    NATS). Returns it and the bound (None where it must be exact); ``stray`` says
    nothing may arrive on ``watch`` meanwhile."""
    deadline = time.monotonic() + contract.grace
    while True:
        dead = broker.inspect(topic).dead_lettered
        bound = dead_lettered_bound(broker, topic)
        settled = exact <= dead <= (exact if bound is None else bound)
        if settled or time.monotonic() >= deadline:
            return dead, bound
        contract.expect_nothing(watch, stray)
