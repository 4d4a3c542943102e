"""What every contract test stands on: brokers, fresh topics, time, and capability checks."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import pytest
from hypothesis.errors import HypothesisException

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._clock import ManualClock
from brokerkit._delivery import Delivery
from brokerkit._hooks import get_plugin_manager
from brokerkit._message import Message
from brokerkit._subscription import Subscription
from brokerkit.contracts._blocking import BlockingView, LoopThread, is_async_result, open_blocking
from brokerkit.hookspecs import hookimpl

__all__ = [
    "CLOCK_SLACK",
    "GRACE",
    "LEASE_TOLERANCE",
    "VISIBILITY_TIMEOUT",
    "BrokerFactory",
    "ContractEnv",
    "ManualTimeline",
    "RealTimeline",
    "Timeline",
    "missing_capabilities",
    "requires",
]

#: The visibility timeout the suite asks for when a test waits for a lease to run out.
VISIBILITY_TIMEOUT = 0.5
#: The longest the suite waits on real time, past any lease it let run out, for a
#: delivery it expects (a :class:`ManualTimeline` waits for nothing).
GRACE = 5.0
#: On real time, the seconds the suite listens before concluding that nothing more
#: will arrive (see :attr:`Timeline.quiet`).
QUIET = 0.05
#: On real time, an unsettled delivery must be handed out again no later than this
#: many seconds after its lease ran out (a :class:`ManualTimeline` allows none).
LEASE_TOLERANCE = 1.0
#: On real time, how much earlier than its deadline a lease may be seen to run out:
#: the clocks of client and server tick at the same rate, but Redis rounds to a
#: millisecond (a :class:`ManualTimeline` allows none).
CLOCK_SLACK = 0.005
#: The step a :class:`ManualTimeline` stops short of a deadline by, to check that
#: nothing happens before it.
JUST_BEFORE = 0.001

#: ``make(**options) -> Broker``: the plugin author's factory (the ``make_broker`` fixture).
BrokerFactory = Callable[..., Broker]

_F = TypeVar("_F", bound=Callable[..., Any])


def requires(capabilities: Capability) -> Callable[[_F], _F]:
    """Mark a contract test as needing ``capabilities``; it is skipped, naming the
    missing ones, on a backend that does not declare them all."""
    mark: Callable[[_F], _F] = pytest.mark.brokerkit_requires(capabilities)
    return mark


def missing_capabilities(declared: Capability, needed: Capability) -> list[str]:
    """The names of the capabilities in ``needed`` that ``declared`` lacks."""
    return [name for name in needed.names() if Capability[name] not in declared]


class Timeline:
    """How the suite lets time pass: real time unless a backend's clock can be moved.

    The suite never sleeps. To let a lease run out it calls :meth:`advance` and then
    waits for the redelivery with ``receive(timeout=<what advance returned> + GRACE)``.
    """

    #: Seconds to listen before concluding that nothing more will arrive. A stray
    #: delivery the suite watches for (a duplicate, a leak, a message that came back)
    #: is one the backend already made deliverable, so one round trip is enough.
    quiet: float = QUIET
    #: Seconds to wait, past any lease let run out, for a delivery that must come.
    grace: float = GRACE
    #: Seconds past a lease's deadline by which its delivery must be back.
    tolerance: float = LEASE_TOLERANCE
    #: Seconds before a lease's deadline at which it may be seen to have run out.
    slack: float = CLOCK_SLACK
    #: Whether time moves only when :meth:`advance` moves it (deadlines are exact).
    manual: bool = False

    def now(self) -> float:
        """The time leases are judged by, in seconds."""
        return time.monotonic()

    def advance(self, seconds: float) -> float:
        """Make ``seconds`` pass for the backend; return how many real seconds the
        caller must still wait for them to have passed."""
        return seconds


class RealTimeline(Timeline):
    """Wall-clock time: leases run out on their own; :meth:`advance` moves nothing.

    A backend behind a slow network can widen the waits in its ``timeline`` fixture:
    ``RealTimeline(quiet=0.5, tolerance=2.0)``.
    """

    def __init__(
        self,
        *,
        quiet: float = QUIET,
        grace: float = GRACE,
        tolerance: float = LEASE_TOLERANCE,
    ) -> None:
        self.quiet = quiet
        self.grace = grace
        self.tolerance = tolerance


class ManualTimeline(Timeline):
    """Time on a :class:`~brokerkit.ManualClock` that the backend reads: advancing
    it runs leases out at once, and nothing happens between calls."""

    quiet = 0.0
    grace = 0.0
    tolerance = 0.0
    slack = 0.0
    manual = True

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        self.clock.advance(seconds)
        return 0.0


class ContractEnv:
    """One contract test's brokers, topics and time.

    Every broker it makes shares the namespace of the plugin author's factory, and
    is closed when the test (or the :meth:`scope` it was made in) ends. Topic names
    carry a fresh uuid, so examples and tests never see each other's messages.
    """

    def __init__(self, make: BrokerFactory, timeline: Timeline) -> None:
        self._make = make
        self.timeline = timeline
        self._brokers: list[Broker] = []
        # Writes down what the publish hooks added to the headers, while some are
        # installed (see sent_headers).
        self._sent: SentHeaders | None = None
        #: Runs the asyncio API when the factory gives it (see ``_blocking.py``).
        self._loop: LoopThread | None = None
        #: Whether a hypothesis example of this test has failed already.
        self.failed = False
        try:
            probe = self._open()
        except BaseException:
            self.close_all()  # the event loop _open may have started for it
            raise
        try:
            try:
                target = probe.target if isinstance(probe, BlockingView) else probe
                self.backend_class: type[Broker] = type(target)
                #: The backend as its URL names it (``kombu+redis``, where the class's
                #: first scheme is ``kombu+memory``): for skip reasons and messages.
                self.backend_name: str = target.describe()
            finally:
                probe.close()
        except BaseException:
            self.close_all()  # (a plugin's describe or close that raised: the loop too)
            raise

    @property
    def capabilities(self) -> Capability:
        """What the backend under test declares."""
        return self.backend_class.capabilities

    @property
    def extend_beyond_timeout(self) -> bool:
        """Whether ``extend(seconds)`` can hold a lease for longer than the visibility
        timeout (the backend's ``extend_beyond_timeout``)."""
        return self.backend_class.extend_beyond_timeout

    @property
    def extend_shortens(self) -> bool:
        """Whether ``extend(seconds)`` can shorten a lease to ``seconds`` from the call
        (the backend's ``extend_shortens``)."""
        return self.backend_class.extend_shortens

    def has(self, capability: Capability) -> bool:
        """Whether the backend declares every flag in ``capability``."""
        return capability in self.capabilities

    def broker(self, **options: Any) -> Broker:
        """A new broker from the author's factory, closed at the end of the scope."""
        if self._sent is None:
            self._sent = SentHeaders.install()
        broker = self._open(**options)
        self._brokers.append(broker)
        return broker

    def _open(self, **options: Any) -> Broker:
        made = self._make(**options)
        if is_async_result(made):
            if self._loop is None:
                self._loop = LoopThread("brokerkit-contract-loop")
            # A blocking view of an AsyncBroker, used as a Broker.
            return cast(Broker, open_blocking(made, self._loop))
        if not isinstance(made, Broker):
            raise TypeError(f"make_broker's factory returned {made!r}, not a brokerkit.Broker")
        return made

    def sent_headers(self, message_id: str, given: Mapping[str, str]) -> dict[str, str]:
        """The headers the message ``message_id`` was published with: ``given``, the
        caller's, and what the installed ``brokerkit_publish_start`` hooks added to
        them (a trace context), which the backend must carry as well."""
        recorded = None if self._sent is None else self._sent.by_id.get(message_id)
        return dict(given) if recorded is None else dict(recorded)

    def topic(self, label: str = "t") -> str:
        """A topic name no other test or example uses."""
        return f"bkc.{label}.{uuid.uuid4().hex[:12]}"

    @property
    def grace(self) -> float:
        """Seconds to wait, past any lease let run out, for a delivery that must come.

        Once an example of the test has failed, hypothesis shrinks it by running
        smaller ones, most of which fail the same way: by waiting for a delivery that
        never comes. From then on the wait is only the lease tolerance and the quiet
        period, so that a failure is reported in seconds, not minutes.
        """
        if self.failed:
            return min(self.timeline.grace, self.timeline.tolerance + self.timeline.quiet)
        return self.timeline.grace

    @contextlib.contextmanager
    def scope(self) -> Iterator[ContractEnv]:
        """Close, on exit, every broker made inside (one hypothesis example); remember
        when the example failed (see :attr:`grace`)."""
        mark = len(self._brokers)
        try:
            yield self
        except BaseException as exc:
            self.failed = self.failed or is_failure(exc)
            raise
        finally:
            made, self._brokers[mark:] = self._brokers[mark:], []
            _close_all(made)

    def close_all(self) -> None:
        """Close every broker made so far (and the event loop of the asyncio API)."""
        made, self._brokers = self._brokers, []
        try:
            _close_all(made)
        finally:
            sent, self._sent = self._sent, None
            try:
                if sent is not None:
                    sent.uninstall()
            finally:
                if self._loop is not None:
                    self._loop.stop()
                    self._loop = None

    # -- waiting ------------------------------------------------------------------

    def let_leases_expire(self, seconds: float = VISIBILITY_TIMEOUT) -> float:
        """Let ``seconds`` (a visibility timeout) pass for the backend; return the real
        seconds a receive must still wait."""
        return self.timeline.advance(seconds)

    def expect(self, subscription: Subscription, promise: str, *, wait: float = 0.0) -> Delivery:
        """The next delivery, which ``promise`` says must come within ``wait`` + GRACE."""
        timeout = wait + self.grace
        delivery = subscription.receive(timeout=timeout)
        assert delivery is not None, f"{promise}: nothing was delivered within {timeout}s"
        return delivery

    def expect_nothing(
        self,
        subscriptions: Subscription | Sequence[Subscription],
        promise: str,
        *,
        wait: float = 0.0,
    ) -> None:
        """Listen for ``wait`` + the quiet period (once, over all ``subscriptions``);
        ``promise`` says nothing may arrive on any of them."""
        if not isinstance(subscriptions, (list, tuple)):
            subscriptions = [cast(Subscription, subscriptions)]
        for index, subscription in enumerate(subscriptions):
            delivery = subscription.receive(timeout=wait + self.timeline.quiet if index == 0 else 0)
            assert delivery is None, (
                f"{promise}: unexpectedly delivered {delivery!r} with body {delivery.body!r}"
            )

    def expect_lease_return(
        self,
        subscription: Subscription,
        *,
        leased: tuple[float, float],
        seconds: float,
        promise: str,
    ) -> Delivery:
        """The delivery whose lease ran ``seconds`` from a moment between ``leased[0]``
        and ``leased[1]`` (:meth:`Timeline.now` readings taken just before and just
        after the call that started or renewed it), received on ``subscription``.

        ``promise`` says it must not be handed out before the lease ran out, and must
        be handed out no later than the timeline's tolerance after. On a
        :class:`ManualTimeline` both bounds are exact: the clock is stopped just short
        of the earliest deadline (nothing may arrive), then moved onto the latest (it
        must arrive); the two differ only where the lease began by the wall clock, as a
        publish ``at=`` an epoch time does.
        """
        timeline = self.timeline
        if timeline.manual:
            before = leased[0] + seconds - timeline.now() - JUST_BEFORE
            timeline.advance(max(before, 0.0))
            self.expect_nothing(
                subscription, f"{promise}: handed out again before its lease ran out"
            )
            timeline.advance(leased[1] + seconds - timeline.now())
            delivery = subscription.receive(timeout=0)
            assert delivery is not None, (
                f"{promise}: not handed out again the moment its {seconds}s lease ran out"
            )
            return delivery
        deadline = leased[1] + seconds + timeline.tolerance
        delivery = subscription.receive(timeout=max(deadline - timeline.now(), 0.0))
        arrived = timeline.now()
        assert delivery is not None, (
            f"{promise}: not handed out again within {seconds}s + {timeline.tolerance}s "
            "after its lease began"
        )
        assert arrived - leased[0] >= seconds - timeline.slack, (
            f"{promise}: handed out again before its lease ran out, "
            f"{arrived - leased[0]:.3f}s into a {seconds}s lease"
        )
        return delivery

    def expect_all(
        self, subscription: Subscription, count: int, promise: str, *, wait: float = 0.0
    ) -> list[Delivery]:
        """``count`` deliveries, each acked as it comes; ``promise`` says they must come."""
        got: list[Delivery] = []
        while len(got) < count:
            delivery = subscription.receive(timeout=wait + self.grace)
            assert delivery is not None, (
                f"{promise}: only {len(got)} of {count} messages were delivered"
            )
            got.append(delivery)
            delivery.ack()
        return got


class SentHeaders:
    """A message-hook plugin the suite registers while a ``brokerkit_publish_start``
    hook is installed (an OpenTelemetry instrumentation, any plugin adding a trace
    context): it writes down, by message id, the headers each message was published
    with, the caller's and those the hooks added, as the hooks left them. They are read
    from the dict the hooks wrote into, not from the message handed to the backend,
    so a backend that changes a message's headers cannot change what it is judged by.
    """

    def __init__(self) -> None:
        #: message id -> the headers it was published with
        self.by_id: dict[str, dict[str, str]] = {}
        # this probe's key in a publish's scope (shared by every plugin)
        self._key = f"brokerkit.contracts.sent_headers.{id(self)}"

    @classmethod
    def install(cls) -> SentHeaders | None:
        """A probe registered with brokerkit's plugin manager, or None when no plugin
        implements ``brokerkit_publish_start`` (the headers sent are the caller's)."""
        manager = get_plugin_manager()
        if not manager.hook.brokerkit_publish_start.get_hookimpls():
            return None
        probe = cls()
        manager.register(probe, probe._key)
        return probe

    def uninstall(self) -> None:
        get_plugin_manager().unregister(self)

    @hookimpl
    def brokerkit_publish_start(self, headers: dict[str, str], scope: dict[str, Any]) -> None:
        # The dict every start hook writes into; read at the end, once all have.
        scope[self._key] = headers

    @hookimpl
    def brokerkit_publish_end(self, messages: Sequence[Message], scope: dict[str, Any]) -> None:
        headers = scope.get(self._key)
        if headers is not None:
            sent = dict(headers)
            for message in messages:
                self.by_id[message.id] = sent


def is_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` ending an example is a failed promise, rather than hypothesis
    discarding the example (``StopTest``, an unsatisfied assumption) or a skip."""
    if exc is None or isinstance(exc, HypothesisException):
        return False
    return isinstance(exc, (Exception, pytest.fail.Exception))


def _close_all(brokers: list[Broker]) -> None:
    errors = []
    for broker in reversed(brokers):
        try:
            broker.close()
        except Exception as exc:  # close every one before reporting
            errors.append(exc)
    if errors:
        raise errors[0]
