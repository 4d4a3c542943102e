"""A retry policy that allows more than one attempt is refused on a backend that never
redelivers (no ACK: kombu+memory, redis+pubsub), as a policy with a delay is, and with
the same words (review 37). Before, ``Immediate(max_attempts=3)`` was taken there and
could never take effect: one attempt, then "not redelivered"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit.exceptions import Unsupported
from brokerkit.worker import Fixed, Immediate, RetryPolicy

CAPPED = [Immediate(max_attempts=3), Fixed(0, max_attempts=2)]


def _job(body: object) -> None:
    pass


def _check_refusal(refused: Unsupported, policy: RetryPolicy) -> None:
    text = str(refused)
    assert "not redelivered" in text and "leave retry out" in text, text
    assert "ACK" in text and repr(policy) in text, text
    assert "Immediate()" not in text, text


@pytest.mark.parametrize("policy", CAPPED, ids=repr)
def test_refused_at_registration(policy: RetryPolicy) -> None:
    with brokerkit.connect("kombu+memory://") as broker:
        worker = brokerkit.Worker(broker)
        with pytest.raises(Unsupported) as refused:
            worker.handler("r37-jobs", retry=policy)(_job)
        assert not worker.handlers
    _check_refusal(refused.value, policy)


def test_refused_when_the_worker_starts_on_a_broker_given_later(
    redis_broker: Callable[..., Any],
) -> None:
    worker = brokerkit.Worker()
    worker.handler("r37-jobs", retry=Immediate(max_attempts=3))(_job)
    worker.broker = redis_broker("redis+pubsub")
    with pytest.raises(Unsupported) as refused, worker.running():
        pass
    _check_refusal(refused.value, Immediate(max_attempts=3))
    assert not worker.drained


@pytest.mark.parametrize(
    "policy", [None, Immediate(), Immediate(max_attempts=1)], ids=["none", "Immediate()", "one"]
)
def test_what_says_one_attempt_is_taken(policy: RetryPolicy | None) -> None:
    """The default, and a cap of one attempt: what the backend does."""
    with brokerkit.connect("kombu+memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("r37-jobs", retry=policy)(_job)
        assert len(worker.handlers) == 1


def test_a_backend_that_redelivers_takes_it() -> None:
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)
        worker.handler("r37-jobs", retry=Immediate(max_attempts=3))(_job)
        assert len(worker.handlers) == 1
