"""Retry policies: what a worker does with a delivery whose handler raised.

A policy answers one question for a failed delivery: dead-letter it now, or hand it
back to be delivered again after how many seconds. The delay is the broker's
(``nack(requeue=True, delay=...)``), so a retry survives the worker's crash; a policy
with a delay therefore needs a backend with :attr:`~brokerkit.Capability.DELAY`, and
the worker refuses it at registration on any other (:class:`~brokerkit.Unsupported`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from brokerkit._error_text import value_text
from brokerkit._schedule import LATEST_DUE, finite_seconds
from brokerkit.exceptions import InvalidOption

__all__ = ["Exponential", "Fixed", "Immediate", "RetryPolicy"]


def _number(name: str, value: object, valid: str) -> float:
    """``value`` as a float if it is a finite int or float (not a bool, nor an int too
    large for a float).

    :raises InvalidOption: otherwise, saying that ``name`` must be ``valid``.
    """
    seconds = finite_seconds(value)
    if seconds is None:
        raise _invalid(name, value, valid)
    return seconds


def _invalid(name: str, value: object, valid: str) -> InvalidOption:
    return InvalidOption(f"{name} must be {valid}, got {value_text(value)}")


def _check_seconds(name: str, value: object, *, positive: bool = False, due: bool = False) -> float:
    """``value`` as seconds, 0 or more (more than 0 if ``positive``); if ``due`` (a
    delay the policy gives as it is), one that falls due by :data:`LATEST_DUE`
    counted from now, as a nack's delay must (``Fixed(1e12)``: milliseconds given as
    seconds, every nack of which would be refused).

    :raises InvalidOption: otherwise, naming the range.
    """
    valid = f"{'a positive' if positive else 'a non-negative'} number of seconds"
    seconds = _number(name, value, valid)
    if seconds < 0 or (positive and seconds == 0):
        raise _invalid(name, value, valid)
    longest = LATEST_DUE - time.time()
    if due and seconds > longest:
        raise _invalid(
            name,
            value,
            f"{valid} falling due by the end of the year 9999: at most {longest:.0f}",
        )
    return seconds


def _check_attempts(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("max_attempts", value, "a whole number of 1 or more (or None)")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """The base of every policy: redeliver up to ``max_attempts`` deliveries in all.

    A policy of your own subclasses this (a frozen dataclass) and overrides
    :meth:`delay`; :attr:`delays` says whether it needs DELAY (true unless overridden).
    A delay that is not a finite number of seconds, 0 or more, falling due by the end
    of the year 9999 (or a :meth:`delay` that raises) is a bug in the policy: the
    worker logs it as an error and retries the delivery at once.

    :ivar max_attempts: how many deliveries a message gets before it is dead-lettered
        (None: as many as the broker's ``max_deliveries`` allows, forever when that is
        unset). The smaller of this and the broker's ``max_deliveries`` wins.
    """

    max_attempts: int | None = None

    def __post_init__(self) -> None:
        _check_attempts(self.max_attempts)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the delivery after failed delivery ``attempt`` (1 = the
        first delivery failed)."""
        return 0.0

    @property
    def delays(self) -> bool:
        """Whether this policy ever asks for a delay (and so needs DELAY)."""
        return True

    def limit(self, max_deliveries: int | None) -> int | None:
        """The attempt after which a failed message is dead-lettered: the smaller of
        :attr:`max_attempts` and the broker's ``max_deliveries`` (None: never)."""
        limits = [n for n in (self.max_attempts, max_deliveries) if n is not None]
        return min(limits) if limits else None


@dataclass(frozen=True)
class Immediate(RetryPolicy):
    """Hand a failed delivery straight back: it may come again at once. The default;
    it needs no DELAY capability."""

    @property
    def delays(self) -> bool:
        return False


@dataclass(frozen=True)
class Fixed(RetryPolicy):
    """Wait the same ``seconds`` before every redelivery: 0 or more, falling due by
    the end of the year 9999 (as a nack's delay must; :class:`InvalidOption` names the
    most, about 7,970 years in 2026).

    >>> Fixed(2.0, max_attempts=3).delay(1)
    2.0
    """

    seconds: float = 1.0

    def __init__(self, seconds: float = 1.0, *, max_attempts: int | None = None) -> None:
        object.__setattr__(self, "seconds", _check_seconds("seconds", seconds, due=True))
        object.__setattr__(self, "max_attempts", _check_attempts(max_attempts))

    def delay(self, attempt: int) -> float:
        return self.seconds

    @property
    def delays(self) -> bool:
        return self.seconds > 0


@dataclass(frozen=True)
class Exponential(RetryPolicy):
    """Wait ``first * factor ** (attempt - 1)`` seconds, at most ``cap``, spread by
    ``jitter`` (0.1: each delay is drawn uniformly within plus or minus 10 %, and still
    at most ``cap``), so that messages that failed together do not all come back
    together. ``cap`` falls due by the end of the year 9999, as ``Fixed``'s
    ``seconds`` does; ``first`` and ``factor`` may be as large as a float holds. A
    ``first`` above ``cap`` makes every delay ``cap``, less its jitter
    (``Exponential(600)`` waits 270 to 300 s, the default ``cap`` being 300): give
    ``cap`` too, or use :class:`Fixed`.

    >>> policy = Exponential(first=0.5, factor=2, cap=10, jitter=0)
    >>> [policy.delay(n) for n in (1, 2, 3, 6)]
    [0.5, 1.0, 2.0, 10.0]
    """

    first: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.1
    # not an __init__ field: each policy, a replace()d one too, draws from its own
    _random: random.Random = field(
        default_factory=random.Random, init=False, repr=False, compare=False
    )

    def __init__(
        self,
        first: float = 1.0,
        *,
        factor: float = 2.0,
        cap: float = 300.0,
        jitter: float = 0.1,
        max_attempts: int | None = None,
    ) -> None:
        first = _check_seconds("first", first, positive=True)
        cap = _check_seconds("cap", cap, positive=True, due=True)
        valid = "a finite number of 1 or more"
        if not _number("factor", factor, valid) >= 1:
            raise _invalid("factor", factor, valid)
        valid = "a fraction from 0 up to (not including) 1"
        if not 0 <= _number("jitter", jitter, valid) < 1:
            raise _invalid("jitter", jitter, valid)
        object.__setattr__(self, "first", first)
        object.__setattr__(self, "factor", float(factor))
        object.__setattr__(self, "cap", cap)
        object.__setattr__(self, "jitter", float(jitter))
        object.__setattr__(self, "max_attempts", _check_attempts(max_attempts))
        object.__setattr__(self, "_random", random.Random())

    def delay(self, attempt: int) -> float:
        exponent = max(attempt - 1, 0)
        try:
            base = min(self.cap, self.first * self.factor**exponent)
        except OverflowError:
            base = self.cap
        if self.jitter:
            base *= self._random.uniform(1 - self.jitter, 1 + self.jitter)
        return min(base, self.cap)
