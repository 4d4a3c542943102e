"""The text of an error, for logs and dead-letter reasons: never failing, on one line,
and, for a validation error of pydantic's or msgspec's, without the values it quotes."""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import reprlib
import sys
import typing
from collections.abc import Mapping
from typing import Any

from brokerkit._declared import Declared

__all__ = [
    "error_text",
    "masked_text",
    "msgspec_text",
    "nothing_answered",
    "one_line",
    "pydantic_text",
    "quotes_values",
    "shortened",
    "value_text",
]

#: How many characters of an error's text a log line or a dead-letter reason shows.
MAX_TEXT = 500

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxlong = _SHORT.maxother = 40
#: The most characters a value is shown in (a container of long ints, each cut short).
_SHOWN_LENGTH = 120


def value_text(value: object) -> str:
    """``value`` as a refusal shows it: its repr cut short (a long str, a 400-digit
    int; 120 characters at most), never raising: an int too long to print (``repr``
    raises ValueError past Python's limit on int to str conversion, 4,300 digits) is
    shown by its size (``an int of about 5,000 digits``), a value whose ``repr``
    fails otherwise by its type."""
    try:
        shown = _SHORT.repr(value)
    except Exception:  # a repr that fails, a huge int (alone or inside a container)
        if isinstance(value, int):
            digits = int(value.bit_length() * math.log10(2)) + 1
            return f"{'a negative' if value < 0 else 'an'} int of about {digits:,} digits"
        return f"<{type(value).__name__}>"
    return shown if len(shown) <= _SHOWN_LENGTH else shown[: _SHOWN_LENGTH - 3] + "..."


#: What to check when nothing answered at a server's address: every backend's "could not
#: connect ... nothing answered" says it in these words (see :func:`nothing_answered`).
CHECK_THE_SERVER = "check the host, the port and that the server runs"


def nothing_answered(service: str, where: object, cause: object) -> str:
    """The text of a first connection that nothing answered: ``could not connect to
    {service} at {where}: nothing answered ({cause}); check the host, the port and that
    the server runs``. ``where`` and ``cause`` must hold no credential (a URL is shown
    masked, as :class:`~brokerkit.BrokerURL` prints itself)."""
    return (
        f"could not connect to {service} at {where}: nothing answered ({cause}); {CHECK_THE_SERVER}"
    )


def error_text(exc: BaseException) -> str:
    """The text of an error that never fails (an error's own ``__str__`` may be broken:
    then ``<TypeName: str() failed>``): ``str(exc)``, but for a validation error of
    pydantic's or msgspec's, wherever it is raised (a body's model, a handler's own
    ``model_validate``, a dataclass's ``__post_init__``), what was wrong without the
    values it quotes, on one line: :func:`pydantic_text` after the name of what was
    validated (``User: age: Input should be a valid integer, ... [int_parsing]``),
    :func:`msgspec_text`. Such an error is told by its class (see
    :func:`quotes_values`); any other error, whatever attributes it has, is its
    ``str()``."""
    if _from_pydantic(exc):
        cached = inspect.getattr_static(exc, _TEXT_READ, None)
        if isinstance(cached, str):
            return cached
        text = _pydantic_text(exc)
        if text is None:  # no errors: its str() has no input to quote
            text = _plain_text(exc)
        else:
            title = _title(exc)
            if title:
                text = shortened(f"{title}: {text}")
        with contextlib.suppress(Exception):  # read once: the worker tells it up to 4 times
            setattr(exc, _TEXT_READ, text)
        return text
    if _from_msgspec(exc):
        try:
            return msgspec_text(exc)
        except Exception:
            return f"<{type(exc).__name__}: str() failed>"
    return _plain_text(exc)


#: The attribute a pydantic error's text is kept in once read (reading its errors is
#: most of the cost: 100,000 errors are ~0.3 s).
_TEXT_READ = "_brokerkit_error_text"


def _plain_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def quotes_values(exc: BaseException) -> bool:
    """``exc`` is a validation error of pydantic's or msgspec's, whose ``str()`` may
    quote the values it refused (:func:`error_text` leaves them out): an error made
    from it must not keep it as its ``__cause__`` or ``__context__``. Told by its class
    (``type(exc)``, which an error cannot fake), and only if that library is loaded
    (neither is imported here); never raises."""
    return _from_pydantic(exc) or _from_msgspec(exc)


#: The classes of pydantic's validation errors: pydantic_core's (pydantic 2's
#: ``pydantic.ValidationError``) and pydantic 1's (``pydantic.v1``, or pydantic itself
#: before 2). Not its other errors (``SchemaError``: its str() is its text).
_PYDANTIC_ERRORS = (
    ("pydantic_core", "ValidationError"),
    ("pydantic.v1.error_wrappers", "ValidationError"),
    ("pydantic.error_wrappers", "ValidationError"),
)


def _loaded_class(module: str, name: str) -> type | None:
    """The class ``name`` of ``module`` if that module is loaded (not imported here;
    read without its module ``__getattr__``: pydantic 2's moved names warn)."""
    found = inspect.getattr_static(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _is_a(exc: BaseException, module: str, name: str) -> bool:
    try:
        kind = _loaded_class(module, name)
        return kind is not None and issubclass(type(exc), kind)
    except Exception:
        return False


def _from_pydantic(exc: BaseException) -> bool:
    """``exc`` is a pydantic ``ValidationError`` (pydantic_core's, pydantic 1's, or a
    subclass)."""
    return any(_is_a(exc, module, name) for module, name in _PYDANTIC_ERRORS)


def _from_msgspec(exc: BaseException) -> bool:
    """``exc`` is an error of msgspec's (a ``ValidationError``, a ``DecodeError``...)."""
    return _is_a(exc, "msgspec", "MsgspecError")


def shortened(text: str) -> str:
    """``text`` on one line, :data:`MAX_TEXT` characters at most."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def one_line(exc: BaseException) -> str:
    """:func:`error_text` on one line, :data:`MAX_TEXT` characters at most."""
    return shortened(error_text(exc))


def pydantic_text(exc: Any) -> str:
    """What a pydantic ``ValidationError`` says was wrong, each error as its path, its
    message and its type (``age: Input should be a valid integer, unable to parse
    string as an integer [int_parsing]``), ``; ``-separated after their count when
    there are several; on one line, shortened. Never the input: ``str(exc)`` quotes
    each error's (``input_value='...'``, the whole payload for JSON it cannot read), and
    an invalid discriminator's message the tag found, which is left out here; nor a
    dict's key in a path (:func:`_step`: ``items.*.price``). The message of a validator
    of the application's (``Value error, ...``) is its own text, but the values it
    quotes as ``repr`` does are left out (:func:`masked_quotes`). One with no errors is
    its ``str()``, which quotes nothing."""
    text = _pydantic_text(exc)
    return _plain_text(exc) if text is None else text


def _pydantic_text(exc: Any) -> str | None:
    """:func:`pydantic_text`, None for an error with no errors."""
    try:
        count, errors = _pydantic_errors(exc)
        names = Declared(_title(exc))  # one for all: it may look at every model loaded
        texts: list[str] = []
        length = 0
        for error in errors:  # only as many as fit: there may be 100,000
            text = " ".join(_pydantic_error(error, names).split())
            texts.append(text)
            length += len(text) + len("; ")
            if length > MAX_TEXT:
                break
    except Exception:  # one broken: no text read (its str() quotes the input)
        return f"{type(exc).__name__} (its errors could not be read)"
    if not texts:
        return None
    text = "; ".join(texts)
    return shortened(text if count == 1 else f"{count} errors: {text}")


def _title(exc: Any) -> str | None:
    """The name of what a pydantic ``ValidationError``'s input was validated as (a
    model's name), if it says."""
    try:
        title = getattr(exc, "title", None)
    except Exception:
        return None
    return title if isinstance(title, str) else None


def _pydantic_errors(exc: Any) -> tuple[int, list[Any]]:
    """How many errors a pydantic ``ValidationError`` has, and they (pydantic_core's
    without their input or URL: less to copy)."""
    core = _loaded_class("pydantic_core", "ValidationError")
    if core is not None and issubclass(type(exc), core):
        errors = exc.errors(include_url=False, include_input=False)
        return exc.error_count(), errors
    errors = exc.errors()
    return len(errors), errors


def _pydantic_error(error: Mapping[str, Any], names: Declared) -> str:
    """One error's text: its path (:func:`_step`: a step shows if it is one of
    ``names``), its message and its type. The
    message of an application's validator or custom error type has the values it quotes
    left out (:func:`masked_quotes`), and a custom error's the values of its context."""
    kind = str(error.get("type", ""))
    message = str(error.get("msg", ""))
    context = error.get("ctx") or {}
    if kind == "union_tag_invalid":  # "Input tag 'the tag found' found using 'kind'..."
        discriminator, expected = context.get("discriminator"), context.get("expected_tags")
        found_using = f" found using {discriminator}" if discriminator is not None else ""
        tags = f": {expected}" if expected is not None else ""
        message = f"Input tag{found_using} does not match any of the expected tags{tags}"
    raised = context.get("error")
    if kind == "value_error" and isinstance(raised, BaseException) and _from_msgspec(raised):
        message = f"Value error, {msgspec_text(raised)}"  # a validator's msgspec check
    elif kind in _APPLICATION_TYPES or not _pydantic_type(kind):
        message = masked_quotes(message)
        if not _pydantic_type(kind) and "." not in kind:
            # A PydanticCustomError's, whose context is the application's (pydantic 1's
            # own types, 'type_error.integer', have a dot, and a context of the schema).
            message = _without(message, context.values())
    loc = list(error.get("loc", ()))
    last = len(loc) - 1
    path = ".".join(
        _step(step, names, unknown_field=kind in _UNKNOWN_FIELD and at == last)
        for at, step in enumerate(loc)
    )
    return f"{path}: {message} [{kind}]" if path else f"{message} [{kind}]"


#: pydantic's error types whose message is the application's: a validator's
#: ``ValueError`` (``Value error, ...``) or failed ``assert`` (``Assertion failed, ...``).
_APPLICATION_TYPES = frozenset({"value_error", "assertion_error"})
#: pydantic's error types whose path ends in the name of a field the body has and the
#: model does not (shown, to find a misspelt field).
_UNKNOWN_FIELD = frozenset({"extra_forbidden", "unexpected_keyword_argument"})
#: What a step of a path that is not a declared name shows.
HIDDEN_STEP = "*"


def _step(step: Any, names: Declared, *, unknown_field: bool) -> str:
    """A step of a pydantic error's path: an index (an int), a name a model declares,
    pydantic's ``[key]`` (the error is a dict's key's), an unknown field's name; any
    other (a dict's key, from the body) is :data:`HIDDEN_STEP`."""
    if isinstance(step, int) and not isinstance(step, bool):
        return str(step)
    if isinstance(step, str) and (step == "[key]" or unknown_field or step in names):
        return step
    return HIDDEN_STEP


def _pydantic_type(kind: str) -> bool:
    """Whether ``kind`` is one of pydantic_core's error types (not a
    ``PydanticCustomError``'s of the application's)."""
    return kind in _core_error_types()


def _core_error_types() -> frozenset[str]:
    global _CORE_TYPES
    if _CORE_TYPES is None:
        module = sys.modules.get("pydantic_core.core_schema")
        found = frozenset(str(kind) for kind in typing.get_args(getattr(module, "ErrorType", None)))
        if not found:
            return found  # not loaded yet: read again next time
        _CORE_TYPES = found
    return _CORE_TYPES


_CORE_TYPES: frozenset[str] | None = None

#: A value quoted as Python's ``repr`` quotes it (a str's or a bytes's), where a word
#: does not go on before or after it (an apostrophe is not a quote: ``can't``).
_REPR_QUOTED = re.compile(r"""(?<!\w)b?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")(?!\w)""")
#: What a value left out shows.
HIDDEN_VALUE = "'...'"


def masked_quotes(text: str) -> str:
    """``text`` with every value quoted as Python's ``repr`` quotes it (``'...'``,
    ``"..."``, ``b'...'``) shown as ``'...'``: how the standard library's errors quote
    the value they refused (``invalid literal for int() with base 10: 'x'``, ``'x' is
    not a valid Colour``), and an application's own ``f"...{value!r}"``. A value
    written without quotes (``f"bad {value}"``) is not told from the text."""
    return _REPR_QUOTED.sub(HIDDEN_VALUE, text)


def masked_text(exc: BaseException) -> str:
    """The text of an error the application's code raised while a body was built from
    it (a dataclass's or a Struct's ``__post_init__``, a validator raising
    ``LookupError``), which may quote the body's values: a validation error of
    pydantic's or msgspec's as :func:`error_text` tells it, any other's ``str()`` with
    the values it quotes as ``repr`` does shown as ``'...'`` (:func:`masked_quotes`:
    ``KeyError('x')`` is ``'...'``). Never raises."""
    text = error_text(exc)
    return text if quotes_values(exc) else masked_quotes(text)


def _without(text: str, values: Any) -> str:
    """``text`` with each of ``values`` (a custom error's context: str or number) that
    it holds as a word of its own shown as ``'...'``, the longest first."""
    shown = sorted(
        {str(v) for v in values if isinstance(v, (str, int, float)) and str(v)},
        key=len,
        reverse=True,
    )
    for value in shown:
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", HIDDEN_VALUE, text)
    return text


#: msgspec's messages that quote the value refused: an enum's or a ``Literal``'s
#: (``Invalid enum value 'x'``), a tagged union's tag (``Invalid value 'x'``), the value
#: as its repr (a str, quoted, its quotes escaped), as it is between quotes (the JSON
#: and msgpack decoders write a refused tag so: ``Invalid value 'it's'``) or an int;
#: then, if any, its path (`` - at `$.field` ``, `` - at `key` in `$.field` `` for a
#: dict's key), which is kept. The quoted value is all up to the last quote the path (or
#: the end) follows, whatever it holds (a quote, a backslash, a path of its own). Any
#: other text (an application's own ``Invalid value for ...``: no quote after ``value``)
#: is not this.
_QUOTED_VALUE = re.compile(
    r"(Invalid (?:enum )?value) (?:'.*'|\".*\"|-?\d+)((?: - at `[^`]*`(?: in `\$[^`]*`)?)?)",
    re.DOTALL,
)


def msgspec_text(exc: BaseException) -> str:
    """A msgspec ``ValidationError``'s or ``DecodeError``'s text, on one line but not
    shortened (its path ends it), without the value it quotes: ``Invalid enum value -
    at `$.colour```. Its other messages quote no value (a type, a constraint, a
    field's name: ``Object contains unknown field `x```); one a ``__post_init__`` of
    the application's raised (msgspec's error has it as its cause) is its own text,
    the values it quotes as ``repr`` does shown as ``'...'`` (:func:`masked_text`:
    ``bad value '...' - at `$.items[0]```)."""
    cause = exc.__cause__
    if cause is not None:
        # A __post_init__'s error: msgspec's text is its text, then the path msgspec
        # added after it.
        plain, inner = _plain_text(exc), _plain_text(cause)
        path = " ".join(plain[len(inner) :].split()) if plain.startswith(inner) else ""
        if quotes_values(cause) and plain.startswith(inner):
            # A pydantic or msgspec check's: its text, as error_text tells it.
            return f"{error_text(cause)} {path}" if path else error_text(cause)
        text = masked_quotes(" ".join(plain.split()))
    else:
        text = " ".join(_plain_text(exc).split())
    quoted = _QUOTED_VALUE.fullmatch(text)
    return quoted.group(1) + quoted.group(2) if quoted else text
