"""Typed broker options, read from a URL's query string and from keywords."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from contextvars import ContextVar
from difflib import get_close_matches
from typing import Any, ClassVar, NamedTuple, TypeVar

from brokerkit._option_secrets import (
    HID,
    after_secrets,
    hiding,
    names_option,
    quoted_value,
    secret_tail_refusal,
)
from brokerkit._secret_options import MASK, AfterPathSecret, is_secret
from brokerkit.exceptions import InvalidOption

__all__ = ["MAX_COUNT", "MAX_SECONDS", "MIN_VISIBILITY_TIMEOUT", "BrokerOptions"]

#: The largest duration option, in seconds (365 days). Longer ones are mistakes
#: (``inf``, milliseconds given as seconds), and past it the lease threads' waits
#: and Redis's millisecond expiries stop being exact.
MAX_SECONDS = 365 * 24 * 3600.0
#: The largest count option (``maxlen``, ``max_deliveries``): 2**32, far more than a
#: topic holds, and a number Redis's Lua scripts still handle exactly.
MAX_COUNT = 2**32
#: Leases are kept in whole milliseconds: a shorter visibility timeout would be none.
MIN_VISIBILITY_TIMEOUT = 0.001

_Options = TypeVar("_Options", bound="BrokerOptions")

#: The field of an options object made from a URL naming the options that followed
#: a secret there (see :func:`after_secrets`), which its repr and checks mask. A field
#: (no option: see :meth:`BrokerOptions.names`), so that ``dataclasses.replace()``
#: carries it to the copy.
_FOLLOWED = "_brokerkit_after_secret"
#: While an options object's ``__post_init__`` runs (its own and its parents').
_CHECKING: ContextVar[bool] = ContextVar("_CHECKING", default=False)


class _Followed(NamedTuple):
    """What followed a secret in the URL of an options object: each option's name,
    the secret's name and the option's value as made from the URL (a copy made by
    ``dataclasses.replace()`` masks it while it keeps that value), and the backend."""

    backend: str = ""
    options: tuple[tuple[str, str, Any], ...] = ()

    def kept(self, options: object) -> dict[str, str]:
        """The options of ``options`` still holding the value they followed a secret
        with, each with that secret's name."""
        return {
            name: secret
            for name, secret, value in self.options
            if _same(getattr(options, name, _NOTHING), value)
        }


_NOTHING = object()


def _same(value: Any, made: Any) -> bool:
    """Whether ``value`` is the value ``made`` (of its type: ``1`` is not ``True``)."""
    return type(value) is type(made) and bool(value == made)


def _checked(post_init: Any) -> Any:
    """``post_init`` (an options class's ``__post_init__``), which, run on its own (in
    a copy made by ``dataclasses.replace()``, not by :meth:`BrokerOptions.build`), does
    not quote the values that followed a secret in the URL the options were made from,
    nor names such an option: it may be the end of the secret (see :meth:`build`)."""

    @functools.wraps(post_init)
    def checked(self: BrokerOptions, *args: Any) -> None:
        if _CHECKING.get():
            post_init(self, *args)  # a subclass's check calling its parent's
            return
        followed: _Followed = getattr(self, _FOLLOWED, _Followed())
        kept = followed.kept(self) if HID.get() is None else {}
        token = _CHECKING.set(True)
        try:
            if not kept:
                post_init(self, *args)
                return
            with hiding(kept):
                try:
                    post_init(self, *args)
                except InvalidOption as exc:
                    named = [kept[k] for k in kept if names_option(str(exc), k)]
                    if not named:
                        raise
                    refusal = secret_tail_refusal(followed.backend, named[0], type(self).names())
                    raise InvalidOption(refusal) from None
        finally:
            _CHECKING.reset(token)

    return checked


_TRUE = {"1", "true", "yes", "on"}
#: What a whole number written in a query looks like (as int() reads it).
_WHOLE = re.compile(r"\s*[+-]?[0-9][0-9_]*\s*")
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class BrokerOptions:
    """Options every backend understands. Backends subclass this to add their own.

    A field whose type is ``int``, ``float``, ``bool`` or ``str`` (or ``X | None``)
    can be given in the URL's query string; any field can be given as a keyword
    to :func:`brokerkit.connect`. Unknown names and bad values raise
    :class:`~brokerkit.InvalidOption` naming the valid ones. In the query, an empty
    value, ``none`` or ``null`` unsets an ``X | None`` option, except an empty value of
    an option in :attr:`empty_refused`, which stays empty for the option's own check
    to refuse (``sentinel=`` with an unset variable is not read as no Sentinel).
    """

    #: How bodies that are neither bytes nor str are encoded: ``json`` or ``msgpack``.
    serializer: str = "json"
    #: Seconds a delivery may stay unsettled before it is handed out again.
    visibility_timeout: float = 30.0
    #: After this many deliveries a message goes to the dead-letter topic (None: never).
    max_deliveries: int | None = None

    #: Options that only a keyword can carry (objects, not text).
    keyword_only: ClassVar[frozenset[str]] = frozenset()
    #: Text options whose empty value is an error, not "unset" (see above).
    empty_refused: ClassVar[frozenset[str]] = frozenset()
    #: Options of this class's parents that the backend does not honour, each with
    #: why: a value set for one is refused, an unset one (None, or empty in the query)
    #: taken. They are not among the valid names.
    not_applicable: ClassVar[Mapping[str, str]] = types.MappingProxyType({})
    #: What followed a secret in the URL (see :data:`_FOLLOWED`); no option.
    _brokerkit_after_secret: _Followed = dataclasses.field(
        default=_Followed(), repr=False, compare=False, kw_only=True
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__repr__" not in cls.__dict__:
            # set before @dataclass runs on the subclass, which then keeps it: every
            # backend's (and plugin's) options mask their secrets as these do
            cls.__repr__ = BrokerOptions.__repr__  # type: ignore[method-assign]
        if "__post_init__" in cls.__dict__:
            # its checks, run by dataclasses.replace(), mask as build's do
            cls.__post_init__ = _checked(cls.__dict__["__post_init__"])  # type: ignore[method-assign]

    def __repr__(self) -> str:
        """The options as a dataclass shows them, but for the value of an option whose
        name is a secret (``api_token=***``; ``None`` when unset), and of one that
        followed a secret in the URL's query (or a secret in its path), which may be
        the end of that secret's value, split at a raw ``&``: ``***`` too."""
        followed = getattr(self, _FOLLOWED, _Followed()).kept(self)
        shown = []
        for field in dataclasses.fields(self):
            if not field.repr:
                continue
            value = getattr(self, field.name)
            hidden = field.name in followed or (is_secret(field.name) and value is not None)
            shown.append(f"{field.name}={MASK if hidden else repr(value)}")
        return f"{type(self).__qualname__}({', '.join(shown)})"

    @_checked
    def __post_init__(self) -> None:
        from brokerkit._serializers import serializer_names

        if self.serializer not in serializer_names():
            raise InvalidOption(
                f"unknown serializer {quoted_value('serializer', self.serializer)}; "
                f"valid serializers: {', '.join(serializer_names())}"
            )
        _check_numbers(self)
        if not self.visibility_timeout >= MIN_VISIBILITY_TIMEOUT:
            raise InvalidOption(
                f"visibility_timeout must be a positive number of seconds, from "
                f"{MIN_VISIBILITY_TIMEOUT} to {MAX_SECONDS:.0f}, "
                f"got {quoted_value('visibility_timeout', self.visibility_timeout)}"
            )
        if self.max_deliveries is not None and self.max_deliveries < 1:
            raise InvalidOption(
                f"max_deliveries must be 1 or more, at most {MAX_COUNT} (or unset), "
                f"got {quoted_value('max_deliveries', self.max_deliveries)}"
            )

    @classmethod
    def names(cls) -> list[str]:
        """The option names this class accepts."""
        return [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in cls.not_applicable and f.name != _FOLLOWED
        ]

    @classmethod
    def build(
        cls: type[_Options],
        query: Mapping[str, str],
        keywords: Mapping[str, Any],
        *,
        backend: str,
        ignore: frozenset[str] = frozenset(),
    ) -> _Options:
        """Options from a query string and keywords; keywords win.

        ``ignore`` names query keys the backend reads itself (a driver's own
        connection arguments, say), which are neither checked nor kept; a typo of
        one is suggested as it. An unknown option, or the value of one, that follows
        a secret in the query (``sentinel_password=pw&...``) is never quoted: it may
        be the end of the secret, split at a raw ``&``.
        """
        hid: list[str] = []
        token = HID.set(hid)
        try:
            return cls._build(query, keywords, backend=backend, ignore=ignore)
        except InvalidOption:
            if not hid:
                raise
            # The message hid the value of an option that follows a secret, and named
            # the option: its name too may be part of the secret's value
            # (``pw&prefix=x`` may be one password).
            message = secret_tail_refusal(backend, hid[0], cls.names(), ignore)
            raise InvalidOption(message) from None
        finally:
            HID.reset(token)

    @classmethod
    def _build(
        cls: type[_Options],
        query: Mapping[str, str],
        keywords: Mapping[str, Any],
        *,
        backend: str,
        ignore: frozenset[str],
    ) -> _Options:
        query, keywords = _without_unset(cls, query, keywords, backend)
        hints = _hints(cls)
        valid = cls.names()
        values: dict[str, Any] = {}
        follows = after_secrets(query)
        for name, text in query.items():
            after_secret = follows.get(name, "")
            if name in ignore:
                continue
            _check_known(name, valid, backend, driver_keys=ignore, after_secret=after_secret)
            if name in cls.keyword_only:
                raise InvalidOption(
                    f"the {backend} option {name!r} cannot be given in a URL; "
                    "pass it as a keyword to brokerkit.connect()"
                )
            values[name] = _convert(
                name, text, hints[name], backend, after_secret=after_secret, empty=cls.empty_refused
            )
        for name, value in keywords.items():
            if name in ignore and name not in valid:
                raise InvalidOption(
                    f"{name!r} is a connection option of the {backend} driver: give it in "
                    f"the URL's query string (?{name}=...), not as a keyword"
                )
            _check_known(name, valid, backend)
            if isinstance(value, str) and name not in cls.keyword_only:
                value = _convert(name, value, hints[name], backend, empty=cls.empty_refused)
            _check_type(name, value, hints[name], backend)
            values[name] = value
            follows.pop(name, None)  # a keyword's value is no part of a secret
        # what followed a secret: masked by repr, as by str() of the URL
        followed = _Followed(
            backend, tuple((k, follows[k], values[k]) for k in follows if k in values)
        )
        with hiding(follows):
            try:
                return cls(**values, _brokerkit_after_secret=followed)
            except InvalidOption as exc:
                # A check naming an option that follows a secret without quoting its
                # value (``cluster=true and sentinel= cannot be combined``).
                named = [follows[k] for k in follows if names_option(str(exc), k)]
                if not named:
                    raise
                hid = HID.get()
                if hid is not None:
                    hid.append(named[0])
                raise


def _check_numbers(options: BrokerOptions) -> None:
    """Refuse NaN, infinities, negative numbers and absurd sizes in any number option.

    The limit follows the field's type, not the value's: a ``float`` field holds
    seconds (at most :data:`MAX_SECONDS`, whether given as ``1e9`` or ``10**9``), an
    ``int`` field a count (at most :data:`MAX_COUNT`).
    """
    hints = _hints(type(options))
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        kinds = _kinds(hints.get(field.name))
        unset = " (or leave it unset, for no limit)" if type(None) in kinds else ""
        shown = quoted_value(field.name, value)
        if float in kinds or isinstance(value, float):
            high, unit = MAX_SECONDS, " seconds"
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidOption(
                    f"{field.name} must be a finite number of seconds, at most "
                    f"{high:.0f}, got {shown}{unset}"
                )
        else:
            high, unit = MAX_COUNT, ""
        if value > high:
            raise InvalidOption(
                f"{field.name} must be at most {high:.0f}{unit}, got {shown}{unset}"
            )
        if value < 0:
            raise InvalidOption(f"{field.name} cannot be negative, got {shown}")


_HINTS: dict[type, dict[str, Any]] = {}


#: The values that leave a not-applicable option unset, as written in a URL.
_UNSET = frozenset({"", "none", "null"})


def _without_unset(
    options: type[BrokerOptions],
    query: Mapping[str, str],
    keywords: Mapping[str, Any],
    backend: str,
) -> tuple[Mapping[str, str], Mapping[str, Any]]:
    """``query`` and ``keywords`` without the options's ``not_applicable`` ones, which
    must be unset: a value set for one is refused, saying why and what is valid."""
    if not options.not_applicable:
        return query, keywords
    follows = after_secrets(query)
    for name, why in options.not_applicable.items():
        text = query.get(name)
        given = text is not None and text.lower() not in _UNSET
        if keywords.get(name) is None and name in follows and given:
            # not named: its name too may be part of the secret before it (an unset
            # value, "", "none" or "null", is taken there as it is anywhere else)
            raise InvalidOption(secret_tail_refusal(backend, follows[name], options.names()))
        if keywords.get(name) is not None or given:
            raise InvalidOption(
                f"{name} does not apply to {backend}: {why}; "
                f"valid options: {', '.join(sorted(options.names()))}"
            )
    kept = AfterPathSecret(query.secret) if isinstance(query, AfterPathSecret) else {}
    kept.update((k, v) for k, v in query.items() if k not in options.not_applicable)
    return kept, {k: v for k, v in keywords.items() if k not in options.not_applicable}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of an options class: read once, not per broker
    (resolving them compiles every annotation string again)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _check_known(
    name: str,
    valid: list[str],
    backend: str,
    *,
    driver_keys: frozenset[str] = frozenset(),
    after_secret: str = "",
) -> None:
    """Refuse an unknown option, naming the valid ones (``driver_keys`` among them,
    the query keys the driver reads) and the closest; never quoting one that follows
    the secret option ``after_secret``."""
    if name in valid:
        return
    listed = f"valid options: {', '.join(sorted(valid))}"
    if driver_keys:
        listed += f"; and the driver's connection options: {', '.join(sorted(driver_keys))}"
    if after_secret:
        raise InvalidOption(secret_tail_refusal(backend, after_secret, valid, driver_keys))
    close = get_close_matches(name, [*valid, *driver_keys], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InvalidOption(f"unknown option {name!r} for {backend}; {hint}{listed}")


def _convert(
    name: str,
    text: str,
    hint: Any,
    backend: str,
    *,
    after_secret: str = "",
    empty: frozenset[str] = frozenset(),
) -> Any:
    """Turn a query-string value into the field's type; an error shows the value
    unless it is a secret or follows the secret option ``after_secret``."""
    kinds = _kinds(hint)
    unset = {"none", "null"} if name in empty else {"", "none", "null"}
    if type(None) in kinds and text.lower() in unset:
        return None
    for kind in kinds:
        if kind is bool:
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        elif kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
        elif kind is str:
            return text
    expected = " or ".join(_describe(k) for k in kinds)
    shown = quoted_value(name, text, after_secret=after_secret)
    if int in kinds and _WHOLE.fullmatch(text) and not after_secret and not is_secret(name):
        # More digits than int() converts (4,300): a whole number all the same.
        digits = len(text.strip().lstrip("+-").replace("_", ""))
        raise InvalidOption(
            f"the {backend} option {name} is a whole number of {digits:,} digits, far "
            f"beyond its range: expected {expected}, within the range the option "
            "documents"
        )
    raise InvalidOption(f"the {backend} option {name}={shown} is not valid: expected {expected}")


def _check_type(name: str, value: Any, hint: Any, backend: str) -> None:
    kinds = _kinds(hint)
    simple = [k for k in kinds if k in (int, float, bool, str, type(None))]
    if len(simple) != len(kinds):
        return  # an object option: the backend checks it
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = any(isinstance(value, k) for k in kinds) or (float in kinds and isinstance(value, int))
    if not ok:
        expected = " or ".join(_describe(k) for k in kinds)
        shown = quoted_value(name, value)
        raise InvalidOption(
            f"the {backend} option {name}={shown} is not valid: expected {expected}"
        )


def _kinds(hint: Any) -> list[Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return list(typing.get_args(hint))
    if origin is typing.Literal:
        return [str]
    return [hint]


def _describe(kind: Any) -> str:
    if kind is type(None):
        return "none"
    if kind is bool:
        return "a boolean (true/false)"
    if kind is int:
        return "a whole number"
    if kind is float:
        return "a number"
    return getattr(kind, "__name__", str(kind))
