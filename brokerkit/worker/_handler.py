"""A registered handler: the function and how the worker runs it (no I/O here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from brokerkit._capabilities import Capability
from brokerkit._compat import is_async_callable
from brokerkit._error_text import value_text
from brokerkit._subscribing import MAX_PREFETCH
from brokerkit._topics import check_group, check_topic
from brokerkit.exceptions import InvalidOption, Unsupported
from brokerkit.worker._retry import Immediate, RetryPolicy
from brokerkit.worker._typed import Binding, bind

__all__ = ["MAX_CONCURRENCY", "MAX_TASK_CONCURRENCY", "HandlerSpec", "check_options", "make_spec"]

#: The most slots a handler whose slots are threads may have (a plain function's, in
#: either worker): a process that cannot start that many threads would fail only when
#: the worker runs.
MAX_CONCURRENCY = 10_000
#: The most slots a coroutine handler (brokerkit.aio.Worker) may have: its slots are
#: tasks.
MAX_TASK_CONCURRENCY = 1_000_000


@dataclass(frozen=True)
class HandlerSpec:
    """One handler as registered.

    :ivar name: the function's qualified name (or the name given), as shown in stats.
    :ivar group: the consumer group (None: the broker's default group).
    :ivar concurrency: handler slots: at most this many run at once.
    :ivar prefetch: at most this many deliveries wait, leased, for a free slot.
    :ivar prefetch_follows: whether ``prefetch`` was left to its default, which is
        ``concurrency`` (and follows it when :meth:`with_concurrency` changes that).
    """

    function: Callable[..., Any]
    topic: str
    group: str | None
    concurrency: int
    prefetch: int
    retry: RetryPolicy
    name: str
    binding: Binding
    prefetch_follows: bool = False

    @property
    def is_coroutine(self) -> bool:
        """Whether the handler is a coroutine function (or a callable that acts as one)."""
        return is_async_callable(self.function)

    def with_concurrency(self, concurrency: int) -> HandlerSpec:
        """The same handler with ``concurrency`` slots (the CLI's ``--concurrency``);
        a prefetch left to its default becomes ``concurrency`` too."""
        concurrency = _count("concurrency", concurrency, 1, _most_slots(self.function))
        prefetch = concurrency if self.prefetch_follows else self.prefetch
        return replace(self, concurrency=concurrency, prefetch=prefetch)

    def check(self, backend: Any) -> None:
        """Refuse what the backend (a broker, or a backend class) cannot do for this
        handler; a broker's refusal names its URL's scheme.

        :raises Unsupported: the retry policy waits between attempts, and the backend
            has no :attr:`~brokerkit.Capability.DELAY` (a delay held in the worker's
            memory would be lost with the worker, so brokerkit does not fake one); or
            it allows more than one attempt (``max_attempts``) and the backend has no
            :attr:`~brokerkit.Capability.ACK`, so never redelivers a message.
        """
        redelivers = Capability.ACK in backend.capabilities
        # Without ACK a failed message is never redelivered: Immediate() is no fix
        no_redelivery = "a failed message is not redelivered there at all: leave retry out"
        if self.retry.delays and Capability.DELAY not in backend.capabilities:
            fix = "use brokerkit.worker.Immediate() there" if redelivers else no_redelivery
            raise Unsupported(
                backend.describe(),
                Capability.DELAY,
                f"retry handler {self.name} after a delay (its policy is {self.retry!r}; {fix})",
            )
        attempts = self.retry.max_attempts
        if not redelivers and attempts is not None and attempts > 1:
            # Immediate(max_attempts=3) there: one attempt, then dropped, whatever it says
            raise Unsupported(
                backend.describe(),
                Capability.ACK,
                f"retry handler {self.name} up to {attempts} attempts (its policy is "
                f"{self.retry!r}; {no_redelivery})",
            )
        if self.group is not None and Capability.COMPETING not in backend.capabilities:
            raise Unsupported(backend.describe(), Capability.COMPETING, "put consumers in groups")


def _most_slots(function: Callable[..., Any]) -> int:
    """The most slots a handler may have: tasks for a coroutine function, else threads."""
    return MAX_TASK_CONCURRENCY if is_async_callable(function) else MAX_CONCURRENCY


def _count(name: str, value: object, least: int, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise InvalidOption(
            f"{name} must be a whole number from {least} to {most:,}, got {value_text(value)}"
        )
    return value


def check_options(
    topic: object,
    *,
    group: str | None,
    concurrency: object,
    prefetch: object,
    retry: object,
    name: object,
) -> None:
    """Check the options of ``@worker.handler(...)`` when it is called, before any
    function is given: a decorator left bare (``@worker.handler``, which would take the
    function for the topic and register nothing) or a bad option fails at once.

    :raises InvalidOption: a bad option, or a function given as the topic.
    :raises InvalidTopic: a bad topic or group name.
    """
    if callable(topic):
        function = getattr(topic, "__qualname__", None) or type(topic).__name__
        raise InvalidOption(
            f"worker.handler takes the topic first: decorate with "
            f"@worker.handler('orders', ...), not a bare @worker.handler (it was given "
            f"{function} as the topic)"
        )
    check_topic(topic)
    if group is not None:
        check_group(group)
    _count("concurrency", concurrency, 1, MAX_TASK_CONCURRENCY)  # see make_spec
    if prefetch is not None:
        # its subscription fetches prefetch + 1 (see _runner_async)
        _count("prefetch", prefetch, 0, MAX_PREFETCH - 1)
    if isinstance(retry, type) and issubclass(retry, RetryPolicy):
        raise InvalidOption(
            f"retry must be a retry policy, got the class {retry.__name__}: pass an "
            f"instance, such as {retry.__name__}()"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidOption(
            f"retry must be a retry policy (brokerkit.worker.Fixed, Exponential or "
            f"Immediate), got {type(retry).__name__}"
        )
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidOption(f"name must be a non-empty str (or None), got {name!r}")


def make_spec(
    function: Callable[..., Any],
    topic: str,
    *,
    group: str | None,
    concurrency: int,
    prefetch: int | None,
    retry: RetryPolicy | None,
    name: str | None,
    takes_coroutines: bool,
) -> HandlerSpec:
    """Check a registration and describe it.

    :raises InvalidOption: a bad parameter or signature, or a coroutine function for
        the sync worker.
    :raises InvalidTopic: a bad topic or group name.
    """
    check_options(
        topic, group=group, concurrency=concurrency, prefetch=prefetch, retry=retry, name=name
    )
    follows = prefetch is None
    prefetch = concurrency if prefetch is None else prefetch
    retry = Immediate() if retry is None else retry
    label = name or getattr(function, "__qualname__", None) or repr(function)
    binding = bind(function)
    if is_async_callable(function) and not takes_coroutines:
        raise InvalidOption(
            f"handler {label} is a coroutine function; run it with brokerkit.aio.Worker, "
            "or make it a plain function"
        )
    _count("concurrency", concurrency, 1, _most_slots(function))
    return HandlerSpec(
        function, topic, group, concurrency, prefetch, retry, label, binding, follows
    )
