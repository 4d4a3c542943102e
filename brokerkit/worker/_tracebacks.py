"""An error's traceback without the values a validation error quotes: Python's own
print of it (every frame, every chained error), each pydantic or msgspec validation
error in it told by its :func:`~brokerkit.worker._error_text.error_text`; and the log
lines that carry it."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from brokerkit.worker._error_text import error_text, masked_quotes, quotes_values

__all__ = ["error_traceback", "log_error", "prints_as_it_is", "shows_values"]


def _chain(error: BaseException) -> list[BaseException]:
    """``error``, the errors it was raised from or during (however deep) and those an
    exception group holds: all that Python's print of it shows (not a context its
    ``raise ... from`` suppressed: ``from None`` hides it)."""
    found: list[BaseException] = []
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        shown = current.__cause__, None if current.__suppress_context__ else current.__context__
        todo += [e for e in shown if e is not None]
        todo += [e for e in getattr(current, "exceptions", ()) if isinstance(e, BaseException)]
    return found


def shows_values(error: BaseException) -> bool:
    """Whether Python's print of ``error`` (its traceback) would quote the values a
    validation error refused: ``error``, or an error it was raised from or during, is
    one of pydantic's or msgspec's (:func:`quotes_values`). Never raises."""
    try:
        return any(quotes_values(e) for e in _chain(error))
    except Exception:
        return True


def prints_as_it_is(error: BaseException) -> bool:
    """Whether Python's print of ``error`` quotes no value: no error of its chain is a
    validation error of pydantic's or msgspec's, nor has a text quoting a value as
    ``repr`` does (:func:`~brokerkit.worker._error_text.masked_quotes`). An error that
    does not may stay the cause of an error made from its masked text. Never raises."""
    try:
        return not any(
            quotes_values(e) or masked_quotes(_text(e)) != _text(e) for e in _chain(error)
        )
    except Exception:
        return False


def _text(error: BaseException) -> str:
    """``error``'s text as Python's print of it shows it (a ``KeyError``'s repr)."""
    return "".join(traceback.format_exception_only(error))


def error_traceback(error: BaseException) -> str:
    """Python's print of ``error`` (``traceback.format_exception``: its frames and
    those of the errors it was raised from or during), each validation error of
    pydantic's or msgspec's in it told without the values it quotes, as
    :func:`error_text` tells it (``pydantic_core._pydantic_core.ValidationError: User:
    age: Input should be a valid integer, ... [int_parsing]``); the error a msgspec
    error was raised from (a Struct's ``__post_init__``'s: msgspec's text is its text),
    and those under it, with the values their text quotes as ``repr`` does shown as
    ``'...'``. Never raises: the frames alone, or nothing, if the print fails."""
    try:
        printed = traceback.TracebackException.from_exception(error)
        _mask(printed, error)
        return "".join(printed.format())
    except Exception:
        try:
            frames = traceback.format_tb(error.__traceback__)
            return "Traceback (most recent call last):\n" + "".join(frames)
        except Exception:
            return ""


def _mask(printed: traceback.TracebackException, error: BaseException) -> None:
    """Tell each validation error of ``error``'s print by its text. The print holds one
    entry per error it shows, each with the entries of the errors it was raised from
    or during (``__cause__``, ``__context__``) and, for a group, of those it holds
    (``exceptions``): walked beside the errors themselves."""
    # Each entry with its error, and whether it is under a msgspec error's cause.
    todo: list[tuple[Any, BaseException, bool]] = [(printed, error, False)]
    seen: set[int] = set()
    while todo:
        entry, current, under = todo.pop()
        if id(entry) in seen:
            continue
        seen.add(id(entry))
        validation = quotes_values(current)
        if validation or under:
            if not isinstance(getattr(entry, "_str", None), str):
                raise TypeError("this Python's traceback print keeps its text elsewhere")
            entry._str = error_text(current) if validation else masked_quotes(entry._str)
        below = under or (validation and current.__cause__ is not None)
        for name in ("__cause__", "__context__"):
            chained, raised = getattr(entry, name, None), getattr(current, name, None)
            if chained is not None and raised is not None:
                todo.append((chained, raised, below))
        held = getattr(current, "exceptions", None)
        for inner, raised in zip(
            getattr(entry, "exceptions", None) or (), held or (), strict=False
        ):
            todo.append((inner, raised, under))


def log_error(
    log: logging.Logger,
    level: int,
    message: str,
    *args: Any,
    error: BaseException,
    extra: dict[str, Any],
) -> None:
    """Log ``message % args`` at ``level`` with ``error``'s traceback, as
    ``log.log(level, message, *args, exc_info=error, extra=extra)`` does; but if that
    print would quote a validation error's values (:func:`shows_values`), the record
    carries no ``exc_info`` (a handler of its own would print it whole) and its
    ``exc_text`` is :func:`error_traceback`, which the standard
    :class:`logging.Formatter` writes after the message, as it writes a traceback."""
    if not log.isEnabledFor(level):
        return
    if not shows_values(error):
        log.log(level, message, *args, exc_info=error, extra=extra, stacklevel=2)
        return
    try:
        path, line, function, _ = log.findCaller(stacklevel=2)
    except ValueError:
        path, line, function = "(unknown file)", 0, "(unknown function)"
    record = log.makeRecord(log.name, level, path, line, message, args, None, function, extra)
    record.exc_text = error_traceback(error)
    log.handle(record)
