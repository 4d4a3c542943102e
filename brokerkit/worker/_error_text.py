"""The text of an error, for logs and dead-letter reasons: never failing, on one line,
and, for a validation error of pydantic's or msgspec's, without the values it quotes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "error_text",
    "msgspec_text",
    "one_line",
    "pydantic_text",
    "quotes_values",
    "shortened",
]

#: How many characters of an error's text a log line or a dead-letter reason shows.
MAX_TEXT = 500


def error_text(exc: BaseException) -> str:
    """The text of an error that never fails (an error's own ``__str__`` may be broken:
    then ``<TypeName: str() failed>``): ``str(exc)``, but for a validation error of
    pydantic's or msgspec's, wherever it is raised (a body's model, a handler's own
    ``model_validate``, a dataclass's ``__post_init__``), what was wrong without the
    values it quotes, on one line: :func:`pydantic_text` after the name of what was
    validated (``User: age: Input should be a valid integer, ... [int_parsing]``),
    :func:`msgspec_text`."""
    try:
        if _from_pydantic(exc):
            title = getattr(exc, "title", None)
            text = pydantic_text(exc)
            return shortened(f"{title}: {text}") if isinstance(title, str) and title else text
        if _from_msgspec(exc):
            return msgspec_text(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"
    return _plain_text(exc)


def _plain_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def quotes_values(exc: BaseException) -> bool:
    """``exc`` is a validation error of pydantic's or msgspec's, whose ``str()`` may
    quote the values it refused (:func:`error_text` leaves them out): an error made
    from it must not keep it as its ``__cause__`` or ``__context__``."""
    return _from_pydantic(exc) or _from_msgspec(exc)


def _from_pydantic(exc: BaseException) -> bool:
    """``exc`` is a pydantic ``ValidationError`` (pydantic_core's, pydantic.v1's, or a
    subclass): it has ``errors()`` and a class of pydantic's. Told apart by that, so
    that pydantic need not be imported."""
    return callable(getattr(exc, "errors", None)) and any(
        str(getattr(kind, "__module__", "")).startswith("pydantic") for kind in type(exc).__mro__
    )


def _from_msgspec(exc: BaseException) -> bool:
    """``exc`` is an error of msgspec's (a ``ValidationError``, a ``DecodeError``...)."""
    return any(str(getattr(kind, "__module__", "")) == "msgspec" for kind in type(exc).__mro__)


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
    an invalid discriminator's message the tag found, which is left out here. The
    message of a validator of the application's (``Value error, ...``) is its own
    text, shown as it is."""
    try:
        errors = [_pydantic_error(error) for error in exc.errors()]
    except Exception:  # not a pydantic error after all, or one broken: no text read
        return f"{type(exc).__name__} (its errors could not be read)"
    text = "; ".join(errors)
    return shortened(text if len(errors) == 1 else f"{len(errors)} errors: {text}")


def _pydantic_error(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    message = str(error.get("msg", ""))
    if kind == "union_tag_invalid":  # "Input tag 'the tag found' found using 'kind'..."
        context = error.get("ctx") or {}
        discriminator, expected = context.get("discriminator"), context.get("expected_tags")
        found_using = f" found using {discriminator}" if discriminator is not None else ""
        tags = f": {expected}" if expected is not None else ""
        message = f"Input tag{found_using} does not match any of the expected tags{tags}"
    raised = (error.get("ctx") or {}).get("error")
    if kind == "value_error" and isinstance(raised, BaseException) and _from_msgspec(raised):
        message = f"Value error, {msgspec_text(raised)}"  # a validator's msgspec check
    path = ".".join(str(step) for step in error.get("loc", ()))
    return f"{path}: {message} [{kind}]" if path else f"{message} [{kind}]"


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
    the application's raised is its own text, shown as it is."""
    cause = exc.__cause__
    if cause is not None and _from_pydantic(cause):
        # A __post_init__'s pydantic check: msgspec's text is pydantic's, with the
        # input, and the path msgspec added after it.
        plain, inner = _plain_text(exc), _plain_text(cause)
        path = " ".join(plain[len(inner) :].split()) if plain.startswith(inner) else ""
        return f"{error_text(cause)} {path}" if path else error_text(cause)
    text = " ".join(_plain_text(exc).split())
    quoted = _QUOTED_VALUE.fullmatch(text)
    return quoted.group(1) + quoted.group(2) if quoted else text
