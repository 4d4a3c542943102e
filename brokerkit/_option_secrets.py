"""What an options error may quote: never a secret's value, nor an option that
follows a secret in a URL's query and may be the end of that secret's value, split at
a raw ``&``."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from brokerkit._secret_options import AfterPathSecret, is_secret

__all__ = [
    "AFTER_SECRET",
    "HID",
    "after_secrets",
    "hiding",
    "names_option",
    "quoted_value",
    "secret_tail_refusal",
    "split_secret_note",
]

#: While :meth:`BrokerOptions.build` makes an options object: the options whose value
#: followed a secret in the query, each with that secret's name (see :func:`quoted_value`).
AFTER_SECRET: ContextVar[Mapping[str, str]] = ContextVar(
    "AFTER_SECRET", default=types.MappingProxyType({})
)
#: While :meth:`BrokerOptions.build` runs: the secrets whose tail a message being made
#: hid (see :func:`quoted_value`); such a message is not raised, as it names the option.
HID: ContextVar[list[str] | None] = ContextVar("HID", default=None)

#: The longest quote of a refused value an error shows.
_LONGEST_SHOWN = 120


def after_secrets(query: Mapping[str, str]) -> dict[str, str]:
    """The options of ``query`` (in its order) that come after a secret one
    (``sentinel_password=pw&db=1&prefix=p``: ``db`` and ``prefix``), each with the
    name of the first secret before it: any of them may be the end of the secret,
    split at a raw ``&`` (``pw&db=1&prefix=p`` may be one password), and no message
    may quote their values, nor the name of one that is unknown, nor name a later
    secret option (``pw&passwd=x`` may be one password too)."""
    follows: dict[str, str] = {}
    # a secret written in the path (``/token=x``): the whole query may be its end
    secret = query.secret if isinstance(query, AfterPathSecret) else ""
    for name in query:
        if secret:
            follows[name] = secret
        elif is_secret(name):
            secret = name
    return follows


def secret_tail_refusal(
    backend: str,
    secret: str,
    valid: list[str] | None = None,
    driver_keys: frozenset[str] = frozenset(),
) -> str:
    """The message refusing an option (its name or its value) that follows the secret
    option ``secret`` in a ``backend`` URL: neither is named, as both may be the end of
    the secret's value (``pw&prefix=x`` may be one password), split at a raw ``&``.
    It says how to have the option named: the secret last in the query, or ``&``
    percent-encoded in it; and lists ``valid``, the options the backend takes, and
    ``driver_keys``, the query keys its driver reads."""
    listed = f"; valid options: {', '.join(sorted(valid))}" if valid else ""
    if driver_keys:
        listed += f"; and the driver's connection options: {', '.join(sorted(driver_keys))}"
    return (
        f"an option that follows {secret!r} in the {backend} URL is not valid; neither "
        f"its name nor its value is shown, as they may be the end of {secret}'s value, "
        "split at a raw '&' (or '?', after a secret in the path): percent-encode them in "
        "the value as %26 (%3F), or give the secret options last in the query to have "
        f"the others named{listed}"
    )


def split_secret_note(secret: str) -> str:
    """Why a value that follows the secret option ``secret`` is not shown, and what to do."""
    return (
        f"it follows {secret!r} in the URL and may be the end of {secret}'s value, "
        "split at a raw '&': percent-encode '&' in the value as %26"
    )


@contextmanager
def hiding(follows: Mapping[str, str]) -> Iterator[None]:
    """Within: the checks of an options object being made do not quote the values
    of ``follows`` (see :func:`after_secrets`)."""
    token = AFTER_SECRET.set(types.MappingProxyType(dict(follows)))
    try:
        yield
    finally:
        AFTER_SECRET.reset(token)


def names_option(message: str, name: str) -> bool:
    """Whether ``message`` holds the option name ``name`` as a word."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def quoted_value(name: str, value: Any, *, after_secret: str = "") -> str:
    """How an error message quotes the value of option ``name``: never the value of a
    secret (``sentinel_password``...), only its type, as it may be the secret itself
    or a near miss of it; nor one that follows the secret option ``after_secret`` (or,
    while :meth:`BrokerOptions.build` makes the options, a secret in the query), as it
    may be the end of that secret."""
    after_secret = after_secret or AFTER_SECRET.get().get(name, "")
    if after_secret:
        hid = HID.get()
        if hid is not None:
            hid.append(after_secret)
        return f"*** (not shown: {split_secret_note(after_secret)})"
    if is_secret(name):
        return f"*** (type {type(value).__name__})"
    if isinstance(value, int) and not -(10**20) < value < 10**20:
        return "a huge int"
    shown = repr(value)
    if len(shown) > _LONGEST_SHOWN:
        size = f"{len(value):,} characters" if isinstance(value, str) else type(value).__name__
        shown = f"{shown[: _LONGEST_SHOWN - 20]}... ({size})"
    return shown
