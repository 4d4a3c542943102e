"""Every brokerkit error survives pickle and copy: ``UnknownScheme``, ``Unsupported``
and ``StaleDelivery`` raised TypeError (or AttributeError) when made again from their
``args``, which their own ``__init__`` does not take, so one raised in a worker process
(multiprocessing, ProcessPoolExecutor) could not reach the parent (a
``multiprocessing.Pool`` hangs on such a result), and ``copy.copy`` of one failed."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

import brokerkit
from brokerkit import Capability
from brokerkit import exceptions as errors


def _made() -> list[errors.BrokerError]:
    return [
        errors.UnknownScheme("nope", ["memory", "redis+stream"]),
        errors.UnknownScheme("x", [], hint="install brokerkit[x]"),
        errors.Unsupported("redis+pubsub", Capability.DELAY, "hold a message"),
        errors.Unsupported("sqlite", Capability.NONE, "list its topics"),
        errors.StaleDelivery([], "lease lost"),
        errors.ReplicationTimeout("not replicated", 1, 2),
        errors.PermissionDenied("NOPERM", "XADD"),
        errors.InvalidURL("bad"),
        errors.InvalidMessage("bad body"),
        errors.BrokerClosed("closed"),
    ]


def _same(made: errors.BrokerError, again: errors.BrokerError) -> None:
    assert type(again) is type(made)
    assert str(again) == str(made)
    assert again.args == made.args
    assert vars(again) == vars(made)


@pytest.mark.parametrize("error", _made(), ids=lambda e: type(e).__name__)
def test_an_error_pickles_and_copies(error: errors.BrokerError) -> None:
    _same(error, pickle.loads(pickle.dumps(error)))
    _same(error, copy.copy(error))
    _same(error, copy.deepcopy(error))


def test_an_unknown_scheme_raised_by_connect_pickles() -> None:
    with pytest.raises(errors.UnknownScheme) as raised:
        brokerkit.connect("nope://host")
    again = pickle.loads(pickle.dumps(raised.value))
    assert again.scheme == "nope" and again.installed == raised.value.installed
    assert str(again) == str(raised.value)


def test_an_unsupported_raised_by_a_backend_pickles(redis_broker: Callable[..., Any]) -> None:
    broker = redis_broker("redis+pubsub")
    with pytest.raises(errors.Unsupported) as raised:
        broker.publish("orders", b"x", delay=5)
    again = pickle.loads(pickle.dumps(raised.value))
    assert again.capability is Capability.DELAY
    assert str(again) == str(raised.value)


def test_deliveries_are_kept_by_a_copy_and_left_behind_by_pickle() -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish("orders", b"x")
        with broker.subscribe("orders") as subscription:
            delivery = subscription.receive(0)
            assert delivery is not None
            stale = errors.StaleDelivery([delivery])
            late = errors.ReplicationTimeout("not replicated", 0, 1, stale=[delivery])
            assert copy.copy(stale).deliveries == (delivery,)
            assert copy.deepcopy(stale).deliveries == (delivery,)
            assert copy.copy(late).stale == (delivery,)
            sent = pickle.loads(pickle.dumps(stale))
            assert sent.deliveries == () and str(sent) == str(stale)
            assert delivery.id in str(sent)
            sent_late = pickle.loads(pickle.dumps(late))
            assert sent_late.stale == () and sent_late.wanted == 1
            delivery.ack()
