"""The lease keeper holds no delivery alive (review 37).

A delivery the application let go of unsettled must stop being renewed, so that its
lease runs out and its message comes back (see
``tests/test_redis_review37_abandoned_deliveries.py`` for the brokers). The keeper keeps
what it is given strongly until its next beat, then weakly: these tests drive its beat
(:meth:`LeaseKeeper.held`, as each renewal round calls it) by hand, on the sync keeper
(the thread one) with a renewal that records what it is given.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest

from brokerkit._delivery import Delivery
from brokerkit._message import Message
from brokerkit.backends.redis._heartbeat import LeaseKeeper


class _Renewals:
    """A renewal callback: records each call's deliveries, reports ``lose`` lost."""

    def __init__(self) -> None:
        self.calls: list[list[Delivery]] = []
        self.lose: list[Delivery] = []
        self.during: Any = None

    def __call__(self, deliveries: list[Delivery]) -> list[Delivery]:
        self.calls.append(list(deliveries))
        if self.during is not None:
            self.during()
        return [d for d in deliveries if d in self.lose]


def _delivery() -> Delivery:
    message = Message("id", "t", b"x", "text/plain", {}, 0.0)
    return Delivery(message, subscription=None)  # type: ignore[arg-type]  # never looked at


@pytest.fixture
def keeper() -> Any:
    renewals = _Renewals()
    # A beat an hour apart: the test calls the round itself.
    keeper = LeaseKeeper(renewals, 3600, name="review37-keeper")
    keeper.renewals = renewals  # type: ignore[attr-defined]
    yield keeper
    keeper.stop()


def test_a_delivery_let_go_of_is_not_kept_past_a_beat(keeper: LeaseKeeper) -> None:
    delivery = _delivery()
    ref = weakref.ref(delivery)
    keeper.hold([delivery])
    assert keeper.held() == [delivery]  # the beat: held weakly from now on
    del delivery
    gc.collect()
    assert ref() is None  # nothing but the keeper referenced it: gone
    assert keeper.held() == []
    assert keeper._weak == {}  # pruned  # type: ignore[attr-defined]


def test_one_let_go_of_before_its_first_beat_is_freed_at_that_beat(keeper: LeaseKeeper) -> None:
    delivery = _delivery()
    ref = weakref.ref(delivery)
    keeper.hold([delivery])
    del delivery
    # The beat moves it to a weak reference, and lets go of it before it looks.
    assert keeper.held() == []
    assert ref() is None


def test_a_round_renews_only_what_is_alive_and_reports_losses(
    keeper: LeaseKeeper, lost_leases: Any
) -> None:
    renewals: _Renewals = keeper.renewals  # type: ignore[attr-defined]
    kept, dropped, lost = _delivery(), _delivery(), _delivery()
    keeper.hold([kept, dropped, lost])
    ref = weakref.ref(dropped)
    del dropped
    renewals.lose = [lost]
    keeper._renew_held()  # type: ignore[attr-defined]
    assert renewals.calls == [[kept, lost]]
    assert ref() is None
    assert lost_leases.lost == [lost]  # the lease-loss hook gets the lost one
    assert keeper.held() == [kept]


def test_a_delivery_let_go_of_during_a_round_is_renewed_by_it_alone(
    keeper: LeaseKeeper,
) -> None:
    """The round holds what it renews: one the application lets go of meanwhile is
    renewed by that round (never a dead reference), and by no later one."""
    renewals: _Renewals = keeper.renewals  # type: ignore[attr-defined]
    app = [_delivery()]
    ref = weakref.ref(app[0])
    keeper.hold(app)
    renewals.during = app.clear
    keeper._renew_held()  # type: ignore[attr-defined]
    assert len(renewals.calls) == 1
    assert renewals.calls[0][0] is ref()  # held by the recorded call alone
    renewals.calls.clear()
    renewals.during = None
    gc.collect()
    assert ref() is None
    keeper._renew_held()  # type: ignore[attr-defined]
    assert renewals.calls == []


def test_drop_and_settle_after_a_beat(keeper: LeaseKeeper) -> None:
    settled, dropped, twice = _delivery(), _delivery(), _delivery()
    keeper.hold([settled, dropped, twice])
    keeper.held()  # all three held weakly now
    keeper.hold([twice])  # held again (after a failed settlement): in both
    keeper.drop([dropped, twice])
    settled._settled = True
    assert keeper.held() == []
    keeper.drop([settled, dropped, twice])  # dropping what is not held does nothing
    assert keeper.held() == []


def test_a_new_delivery_with_a_dead_ones_id(keeper: LeaseKeeper) -> None:
    """A dead delivery's entry never stands for a new one that has its id (CPython
    reuses the address): the new one is held, renewed and dropped as its own."""
    old = _delivery()
    keeper.hold([old])
    keeper.held()
    for_id = id(old)
    del old
    gc.collect()
    new = None
    made = []
    for _ in range(1000):  # find a delivery at the freed address, as CPython reuses it
        candidate = _delivery()
        if id(candidate) == for_id:
            new = candidate
            break
        made.append(candidate)
    if new is None:
        pytest.skip("no new delivery took the freed address")
    keeper.hold([new])
    assert keeper.held() == [new]
    keeper.drop([new])
    assert keeper.held() == []


def test_hold_drop_and_beats_from_many_threads(keeper: LeaseKeeper) -> None:
    """The sync broker's keeper beats in a thread while the application's threads hold
    and drop: every delivery dropped ends up neither held nor kept alive."""
    kept = [_delivery() for _ in range(50)]
    keeper.hold(kept)
    stop = threading.Event()
    errors: list[BaseException] = []

    def beats() -> None:
        try:
            while not stop.is_set():
                for delivery in keeper.held():
                    assert not delivery.settled
        except BaseException as exc:
            errors.append(exc)

    def app() -> None:
        try:
            for _ in range(300):
                batch = [_delivery() for _ in range(20)]
                keeper.hold(batch)
                keeper.drop(batch[:10])  # settled
                del batch  # the other ten let go of unsettled
        except BaseException as exc:
            errors.append(exc)

    beat = threading.Thread(target=beats)
    beat.start()
    workers = [threading.Thread(target=app) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    beat.join()
    assert errors == []
    gc.collect()
    keeper.held()  # a beat after the last hold lets go of the young ones
    gc.collect()
    assert sorted(map(id, keeper.held())) == sorted(map(id, kept))
