"""Checking the time arguments of ``publish``, ``nack``, ``extend`` and ``receive``:
pure functions, no I/O."""

from __future__ import annotations

import datetime
import math
import numbers
import time

from brokerkit._options import MAX_SECONDS, MIN_VISIBILITY_TIMEOUT
from brokerkit.exceptions import InvalidOption

__all__ = [
    "LATEST_DUE",
    "MAX_REASON_LENGTH",
    "check_lease_seconds",
    "check_nack_delay",
    "check_reason",
    "check_requeue",
    "check_timeout",
    "finite_seconds",
    "publish_delay",
]

#: The longest ``reason`` a nack may record on a dead letter, in characters.
MAX_REASON_LENGTH = 1000
#: The latest due time (epoch seconds: the end of the year 9999, UTC, where
#: ``datetime.max`` ends): a ``delay`` of ``publish`` or ``nack`` must fall due by
#: then, and ``at`` be no later. Later ones are mistakes (milliseconds given as
#: seconds, a "never" of 1e300); up to it, every due time is a datetime and the Redis
#: backends' due times in milliseconds stay exact (past about 1e305 seconds they
#: overflowed).
LATEST_DUE = 253402300800.0
_LATEST = "by the end of the year 9999 (epoch seconds 253402300800 at most)"


def finite_seconds(value: object) -> float | None:
    """``value`` as seconds if it is a finite int or float (not a bool, not inf or
    nan, not an int too large for a float), else None: for times read from the wire."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def _seconds(name: str, value: object, now: float) -> float:
    """``value`` as a number of seconds, 0 or more, that falls due by
    :data:`LATEST_DUE` when counted from ``now``."""
    longest = LATEST_DUE - now
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOption(f"{name} must be {_valid_delay(longest)}, got {type(value).__name__}")
    # Compared before converting: exact for any int, and false for NaN.
    if not 0 <= value <= longest:
        raise InvalidOption(f"{name} must be {_valid_delay(longest)}, got {_number(value)}")
    return float(value)


def _valid_delay(longest: float) -> str:
    """What a delay must be, for the error refusing one (made only then)."""
    return (
        f"a finite number of seconds, 0 or more, that falls due {_LATEST}: at most "
        f"{longest:.0f} seconds from now"
    )


def publish_delay(delay: object, at: object, now: float) -> float:
    """Seconds from ``now`` (epoch seconds) until a message published with ``delay``
    or ``at`` is due: 0 for "now" (no delay, a zero delay, or an ``at`` in the past).

    :raises InvalidOption: both are given, a delay is negative, NaN, infinite or
        falls due after :data:`LATEST_DUE`, ``at`` is later than it, or ``at``
        is a naive datetime or not a time at all.
    """
    if delay is not None and at is not None:
        raise InvalidOption(
            "give either delay (seconds from now) or at (an aware datetime or epoch "
            "seconds), not both"
        )
    if delay is not None:
        return _seconds("delay", delay, now)
    if at is None:
        return 0.0
    if isinstance(at, datetime.datetime):
        if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
            raise InvalidOption(
                f"at must be a timezone-aware datetime (naive datetimes are ambiguous), "
                f"got {at!r}; use datetime.now(timezone.utc) + timedelta(...)"
            )
        due = at.timestamp()
    elif isinstance(at, bool) or not isinstance(at, (int, float)):
        raise InvalidOption(
            f"at must be a timezone-aware datetime or epoch seconds (a number), "
            f"got {type(at).__name__}"
        )
    else:
        seconds = finite_seconds(at)
        if seconds is None:
            raise InvalidOption(
                f"at (epoch seconds) must be a finite number, got "
                f"{'a huge int' if isinstance(at, int) else repr(at)}"
            )
        due = seconds  # one in the past (before 1970 too) publishes at once
    if not due <= LATEST_DUE:
        raise InvalidOption(
            f"at must be a time {_LATEST}, got {_number(at) if isinstance(at, int) else repr(due)}"
            + (
                "; epoch seconds are wanted, not milliseconds"
                if 1e12 <= due < 1e15 and not isinstance(at, datetime.datetime)
                else ""
            )
        )
    return max(due - now, 0.0)


def check_nack_delay(delay: object, requeue: bool, now: float | None = None) -> float | None:
    """The delay of a nack in seconds, or None for "redeliver at once".

    :raises InvalidOption: not a finite number of seconds, 0 or more, that falls due
        (from ``now``, epoch seconds: this machine's clock by default) by
        :data:`LATEST_DUE`; or a delay with ``requeue=False`` (a dead letter is not
        delayed).
    """
    if delay is None:
        return None
    seconds = _seconds("delay", delay, time.time() if now is None else now)
    if not requeue:
        raise InvalidOption(
            "delay applies to a requeue: nack(requeue=True, delay=seconds); "
            "requeue=False dead-letters at once"
        )
    return seconds or None


def check_requeue(requeue: object) -> bool:
    """``requeue`` if it is a bool.

    :raises InvalidOption: otherwise (a str such as ``"no"`` or None would be read by
        its truth, the opposite of what was meant).
    """
    if type(requeue) is not bool:
        raise InvalidOption(
            f"requeue must be True (deliver again) or False (dead-letter), "
            f"got {type(requeue).__name__}"
        )
    return requeue


def check_reason(reason: object) -> str | None:
    """``reason`` if it is a str of 1 to :data:`MAX_REASON_LENGTH` characters (or None).

    :raises InvalidOption: otherwise.
    """
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidOption(
            f"reason must be a str of 1 to {MAX_REASON_LENGTH} characters, "
            f"got {type(reason).__name__}"
        )
    if not reason:
        raise InvalidOption(
            f"reason must be a str of 1 to {MAX_REASON_LENGTH} characters, got an empty "
            "one; leave it out (None) to give no reason"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidOption(
            f"reason must be a str of 1 to {MAX_REASON_LENGTH} characters, got one of "
            f"{len(reason)}; shorten it (the dead letter's header holds a summary, "
            "not a traceback)"
        )
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOption(
            "reason must be text that UTF-8 can hold (it has a lone surrogate)"
        ) from None
    return reason


def check_lease_seconds(seconds: object) -> float:
    """``seconds`` by which ``extend`` renews a lease, as a float.

    :raises InvalidOption: not an int or float (a bool, a str...), NaN, infinite, or
        outside :data:`~brokerkit._options.MIN_VISIBILITY_TIMEOUT` to
        :data:`~brokerkit._options.MAX_SECONDS`, the bounds of ``visibility_timeout``
        (past them a backend's millisecond expiry would drop the lease).
    """
    valid = (
        f"a number of seconds (int or float) from {MIN_VISIBILITY_TIMEOUT} to "
        f"{MAX_SECONDS:.0f} (365 days), or None for the visibility timeout"
    )
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidOption(f"extend(seconds=...) takes {valid}; got {type(seconds).__name__}")
    # Comparisons are exact for any int, and false for NaN.
    if not MIN_VISIBILITY_TIMEOUT <= seconds <= MAX_SECONDS:
        raise InvalidOption(f"extend(seconds=...) takes {valid}; got {_number(seconds)}")
    return float(seconds)


def check_timeout(timeout: object) -> float | None:
    """``timeout`` of ``receive`` and ``consume`` as seconds (a float), or None.

    None waits without end; a finite number waits that long, 0 (or less) not at all.
    ``receive`` calls this only for what its own fast test does not pass (a plain
    float or int in range, or None), so it need not be quick.

    :raises InvalidOption: not None nor a real number (a str, a bool...), NaN,
        infinite, or an int too large for a float.
    """
    if timeout is None:
        return None
    valid = "None (wait without end) or a finite number of seconds (0: do not wait)"
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise InvalidOption(f"timeout must be {valid}; got {type(timeout).__name__}")
    try:
        seconds = float(timeout)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        hint = "; leave it None to wait without end" if seconds == math.inf else ""
        raise InvalidOption(f"timeout must be {valid}; got {_number(timeout)}{hint}")
    return seconds


def _number(value: object) -> str:
    """A number for an error message: an int too long to be worth quoting is not."""
    if isinstance(value, int) and not -(10**20) < value < 10**20:
        return "a huge int"
    return repr(value)
