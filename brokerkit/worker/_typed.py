"""What a handler takes: the body (decoded, and validated into its annotated type) and
the delivery, read from the handler's signature once, at registration.

A body parameter annotated with a pydantic model, a msgspec ``Struct`` or a dataclass
gets an instance of it; pydantic and msgspec are never imported here unless the
handler's own annotation comes from them (they are optional extras). A dataclass is
built by brokerkit's own converter (:class:`~brokerkit.worker._dataclass_body.Builders`),
never by either library, so that it is built the same whichever extras are installed.
Which annotations name a model, and which are refused at registration, is
:mod:`brokerkit.worker._body_types`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._serializers import is_json
from brokerkit.exceptions import InvalidOption, SerializationError
from brokerkit.worker._body_types import body_model, check_body_type, model_name
from brokerkit.worker._dataclass_body import Builders, Misfit
from brokerkit.worker._error_text import (
    masked_text,
    msgspec_text,
    one_line,
    pydantic_text,
    shortened,
)
from brokerkit.worker._field_types import unannotated
from brokerkit.worker._tracebacks import prints_as_it_is

__all__ = ["Binding", "InvalidBody", "bind"]


class InvalidBody(Exception):
    """A body that does not decode, or does not validate into the handler's type: the
    worker dead-letters it at once, with this error's text as the reason.

    Its text says what was wrong without the body's values a validation error quotes,
    nor those the application's own error (a ``__post_init__``'s, a validator's)
    quotes as ``repr`` does (``'...'``); a value written without quotes is shown. The
    error it is made from is its ``__cause__`` only if Python's print of that error
    quotes no value (a span's recorded exception prints the chain): never a
    pydantic or msgspec validation error."""

    #: The body's own JSON parser (pydantic's, msgspec's) refused the payload as JSON it
    #: cannot read, not for what it holds.
    _unreadable_json: bool = False


def _invalid(text: str, *, unreadable_json: bool = False) -> InvalidBody:
    error = InvalidBody(text)
    error._unreadable_json = unreadable_json
    return error


Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Binding:
    """How to call one handler: which parameter gets the body (converted by
    ``convert``), and which gets the delivery.

    :ivar body_type: the annotated body type, or None when the body is passed as decoded.
    :ivar convert_json: validates an ``application/json`` payload itself into
        ``body_type`` (None: decode it, then ``convert``).
    """

    body_index: int | None
    delivery_index: int | None
    arity: int
    convert: Converter | None
    body_type: Any
    convert_json: Converter | None = None

    def arguments(self, delivery: Any) -> tuple[Any, ...]:
        """The positional arguments for one delivery.

        :raises InvalidBody: the body does not decode, or does not validate; also when
            building the body type raises anything else (an ``assert`` in a dataclass's
            ``__post_init__``, a validator raising ``LookupError``): that body can never
            be handled, so it is dead-lettered rather than handed back again and again.
        """
        args: list[Any] = [None] * self.arity
        if self.body_index is not None:
            args[self.body_index] = self._body(delivery)
        if self.delivery_index is not None:
            args[self.delivery_index] = delivery
        return tuple(args)

    def _body(self, delivery: Any) -> Any:
        """The body to pass: a JSON payload is validated as the JSON it is (where a
        model is read differently from JSON than from Python objects: strict types,
        non-str map keys), any other payload decoded and then validated.

        A JSON payload the model's own parser cannot read as JSON but
        ``delivery.body`` decodes (a byte-order mark, UTF-16 or UTF-32, a NaN: what
        other producers write) is validated as decoded; if that fails too, the JSON
        validation's error is the one raised (the more precise for a strict model).
        One it reads but refuses (a field of the wrong type) is refused."""
        native: InvalidBody | None = None
        if self.convert_json is not None and is_json(delivery.content_type):
            try:
                return self._converted(self.convert_json, delivery.payload)
            except InvalidBody as exc:
                if not exc._unreadable_json:
                    raise
                native = exc
        body = _decoded(delivery)  # a payload that is not JSON: the decoder's own reason
        if self.convert is None:
            return body
        try:
            return self._converted(self.convert, body)
        except InvalidBody:
            if native is None:
                raise
            raise native from None

    def _converted(self, convert: Converter, value: Any) -> Any:
        try:
            return convert(value)
        except InvalidBody:
            raise
        except Exception as exc:
            # An error of the application's (a validator raising LookupError, a
            # Struct's __post_init__ raising KeyError), whose text may quote the body.
            name = getattr(self.body_type, "__name__", repr(self.body_type))
            invalid = InvalidBody(f"{name}: {type(exc).__name__}: {shortened(masked_text(exc))}")
            if prints_as_it_is(exc):
                raise invalid from exc
        raise invalid  # outside the except: not in context, its text quotes a value


def _decoded(delivery: Any) -> Any:
    """``delivery.body``; raise InvalidBody with the decoder's reason if it does not decode."""
    try:
        return delivery.body
    except SerializationError as exc:
        raise InvalidBody(one_line(exc)) from exc


def bind(function: Callable[..., Any]) -> Binding:
    """Read ``function``'s signature: at most one body parameter and one delivery
    parameter (annotated ``Delivery``/``AsyncDelivery``, or named ``delivery`` and
    annotated with nothing or ``Any``).

    :raises InvalidOption: the signature cannot be served (more parameters, keyword-only
        parameters without defaults, two body parameters, only ``*args``/``**kwargs``:
        a decorator's wrapper without ``functools.wraps``), or the body's dataclass has
        a field that cannot be built (see :class:`~brokerkit.worker._dataclass_body.Builders`).
    """
    if not callable(function):
        raise InvalidOption(f"a handler must be callable, got {type(function).__name__}")
    name = getattr(function, "__qualname__", repr(function))
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise InvalidOption(f"cannot read the signature of handler {name}: {exc}") from None
    annotated = _annotated_function(function)
    try:
        hints = typing.get_type_hints(annotated, include_extras=True)
    except Exception:  # one annotation does not resolve: resolve each alone, below
        hints = {}
    body_index = delivery_index = None
    body_type: Any = None
    positional = 0
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.kind is parameter.KEYWORD_ONLY:
            if parameter.default is parameter.empty:
                raise InvalidOption(
                    f"handler {name} has the keyword-only parameter {parameter.name!r} "
                    "without a default; a handler takes the body and/or the delivery"
                )
            continue
        hint = hints.get(parameter.name, parameter.annotation)
        if isinstance(hint, str):
            hint = _resolve(annotated, name, parameter.name, hint)
        annotation, hint = hint, unannotated(hint)
        untyped = hint is parameter.empty or hint is Any
        if _is_delivery(hint) or (untyped and parameter.name == "delivery"):
            if delivery_index is not None:
                raise InvalidOption(f"handler {name} takes the delivery twice")
            delivery_index = positional
        else:
            if body_index is not None:
                raise InvalidOption(
                    f"handler {name} has two body parameters ({parameter.name!r} is the "
                    "second); a handler takes the body and/or the delivery (annotated "
                    "Delivery, or named 'delivery')"
                )
            body_index = positional
            body_type = None if hint is parameter.empty else hint
            check_body_type(name, parameter.name, annotation, body_type)
        positional += 1
    catch_all = [
        f"{'*' if p.kind is p.VAR_POSITIONAL else '**'}{p.name}"
        for p in signature.parameters.values()
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if positional == 0 and catch_all:
        raise InvalidOption(
            f"handler {name} takes only {', '.join(catch_all)}: the worker reads what a "
            "handler takes from its named parameters, so it would call this one with "
            "nothing. Name them: the body, and/or the delivery (annotated Delivery, or "
            "named 'delivery'); a decorator should wrap the handler with functools.wraps, "
            "so that the wrapped function's parameters are read"
        )
    return Binding(
        body_index,
        delivery_index,
        positional,
        converter(body_type),
        body_type,
        json_converter(body_type),
    )


def _annotated_function(function: Callable[..., Any]) -> Any:
    """The function whose annotations ``function``'s parameters carry, and in whose
    module they resolve, read as :func:`inspect.signature` reads the parameters: a
    wrapper's wrapped function (``__wrapped__``, set by ``functools.wraps`` or
    ``update_wrapper``, a class-based decorator's instance included, down to one that
    has a ``__signature__`` of its own), a partial's function (a partial of a
    partial's, at any depth; the parameters it binds are no longer in the handler's
    signature, and those bound by keyword are keyword-only with a default, never
    passed by the worker), a callable object's ``__call__``; ``function`` itself
    otherwise (a function, a bound method). ``typing.get_type_hints`` refuses a
    partial or an instance outright."""
    function = _unwrapped(function)
    while isinstance(function, functools.partial):
        function = _unwrapped(function.func)
    if inspect.isroutine(function) or isinstance(function, type):
        return function
    return type(function).__call__


def _unwrapped(function: Any) -> Any:
    """``function`` without the wrappers around it, as :func:`inspect.signature`
    unwraps it (which gives the wrapped function's parameters, so their annotations
    are the wrapped function's, and resolve in its module, not the decorator's)."""
    try:
        return inspect.unwrap(function, stop=lambda f: hasattr(f, "__signature__"))
    except ValueError:  # a chain of __wrapped__ that loops: inspect.signature failed too
        return function


def _resolve(function: Callable[..., Any], name: str, parameter: str, annotation: str) -> Any:
    """The type a string annotation of ``function`` (a function, not a partial nor a
    callable object: see :func:`_annotated_function`) names, in its module.

    :raises InvalidOption: it names nothing there (a type defined inside a function,
        under ``from __future__ import annotations``): the body would go unvalidated.
    """
    namespace = dict(getattr(function, "__globals__", {}))
    try:
        return eval(annotation, namespace)  # what typing.get_type_hints does, one name
    except Exception as exc:
        raise InvalidOption(
            f"the annotation {annotation!r} of parameter {parameter!r} of handler {name} "
            f"does not resolve in its module ({type(exc).__name__}: {exc}); define the type "
            "at module level, or annotate with the class itself"
        ) from None


def _is_delivery(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, (Delivery, AsyncDelivery))


def converter(body_type: Any) -> Converter | None:
    """The function that turns a decoded body into ``body_type`` (None: pass it as it is);
    see :func:`~brokerkit.worker._body_types.body_model` for what is validated.

    :raises InvalidOption: ``body_type`` is a dataclass with a field brokerkit cannot
        build (see :class:`~brokerkit.worker._dataclass_body.Builders`).
    """
    model = body_model(body_type)
    if model is None:
        return None
    cls = typing.get_origin(model) or model
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        return _pydantic(model, pydantic.ValidationError)
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(cls, msgspec.Struct):
        return _msgspec(model, msgspec)
    if dataclasses.is_dataclass(cls):
        return _dataclass(model)
    return None


def json_converter(body_type: Any) -> Converter | None:
    """The function that validates a JSON payload (bytes) into ``body_type``, for the
    types whose library reads JSON itself (pydantic models, msgspec Structs); None
    for the others."""
    model = body_model(body_type)
    if model is None:
        return None
    cls = typing.get_origin(model) or model
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        return _pydantic(model, pydantic.ValidationError, from_json=True)
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(cls, msgspec.Struct):
        return _msgspec(model, msgspec, from_json=True)
    return None


def _pydantic(model: Any, error: type[Exception], *, from_json: bool = False) -> Converter:
    def convert(body: Any) -> Any:
        try:
            if from_json or isinstance(body, (bytes, str)):
                return model.model_validate_json(body)
            return model.model_validate(body)
        except error as exc:
            invalid = _invalid(
                f"{model.__name__}: {pydantic_text(exc)}", unreadable_json=_json_invalid(exc)
            )
        raise invalid  # outside the except: not in context, pydantic's error quotes the input

    return convert


def _json_invalid(error: Any) -> bool:
    """Whether pydantic refused a payload as JSON it cannot read (``json_invalid``)."""
    try:
        return any(e.get("type") == "json_invalid" for e in error.errors())
    except Exception:
        return False


def _msgspec(struct: Any, msgspec: Any, *, from_json: bool = False) -> Converter:
    def convert(body: Any) -> Any:
        try:
            if from_json or isinstance(body, (bytes, str)):
                return msgspec.json.decode(body, type=struct)
            # Lax: msgpack carries what JSON would (a datetime as text, say).
            return msgspec.convert(body, struct, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            invalid = _invalid(
                f"{model_name(struct)}: {shortened(msgspec_text(exc))}",
                # a DecodeError that is no ValidationError: JSON msgspec cannot read
                unreadable_json=not isinstance(exc, msgspec.ValidationError),
            )
        raise invalid  # outside the except: not in context, msgspec's error may quote a value

    return convert


def _dataclass(model: Any) -> Converter:
    """A dataclass, or a parametrized generic one (built as a field of that type is: its
    fields of a type variable as the type arguments given)."""
    name = model_name(model)
    try:
        build = Builders().dataclass(model)
    except RecursionError:  # a type nesting past what Builders caps: not built at all
        raise InvalidOption(
            f"the dataclass {name} nests its field types deeper than Python's recursion "
            f"limit ({sys.getrecursionlimit()}) lets brokerkit work out how to build it; "
            "annotate the deepest fields with a type taken as decoded (dict, list, Any)"
        ) from None

    def convert(body: Any) -> Any:
        try:
            return build(body, 1)  # the body is the first level
        except Misfit as exc:
            # one line, shortened: an unknown field's name is the body's, line breaks and all
            text = f"{name}: {shortened(exc.text)}{exc.where()}"
            raise InvalidBody(text) from (exc.__cause__ or exc)

    return convert
