"""What a handler takes: the body (decoded, and validated into its annotated type) and
the delivery, read from the handler's signature once, at registration.

A body parameter annotated with a pydantic model, a msgspec ``Struct`` or a dataclass
gets an instance of it; pydantic and msgspec are never imported here unless the
handler's own annotation comes from them (they are optional extras). A dataclass is
built by brokerkit's own converter (:class:`_Builders`), never by either library, so
that it is built the same whichever extras are installed.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
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
from brokerkit.worker._dataclass_body import Builders, Misfit, unannotated
from brokerkit.worker._error_text import error_text, one_line

__all__ = ["Binding", "InvalidBody", "bind"]


class InvalidBody(Exception):
    """A body that does not decode, or does not validate into the handler's type: the
    worker dead-letters it at once, with this error's text as the reason."""


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
                if not _unreadable_json(exc.__cause__):
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
            raise native from native.__cause__

    def _converted(self, convert: Converter, value: Any) -> Any:
        try:
            return convert(value)
        except InvalidBody:
            raise
        except Exception as exc:
            name = getattr(self.body_type, "__name__", repr(self.body_type))
            raise InvalidBody(f"{name}: {type(exc).__name__}: {one_line(exc)}") from exc


def _decoded(delivery: Any) -> Any:
    """``delivery.body``; raise InvalidBody with the decoder's reason if it does not decode."""
    try:
        return delivery.body
    except SerializationError as exc:
        raise InvalidBody(error_text(exc)) from exc


def bind(function: Callable[..., Any]) -> Binding:
    """Read ``function``'s signature: at most one body parameter and one delivery
    parameter (annotated ``Delivery``/``AsyncDelivery``, or named ``delivery`` and
    annotated with nothing or ``Any``).

    :raises InvalidOption: the signature cannot be served (more parameters, keyword-only
        parameters without defaults, two body parameters), or the body's dataclass has
        a field that cannot be built (see :class:`_Builders`).
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
            _check_body_type(name, parameter.name, annotation, body_type)
        positional += 1
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


def _supertype(hint: Any) -> Any:
    """``hint`` without the ``NewType`` (and ``Annotated``) around it, if any: what it
    is at run time (``NewType("VipOrder", Order)`` is ``Order``)."""
    hint = unannotated(hint)
    for _ in range(20):  # a NewType of a NewType...
        if not hasattr(hint, "__supertype__"):
            break
        hint = unannotated(hint.__supertype__)
    return hint


def _body_model(hint: Any) -> Any:
    """What a body annotated ``hint`` is validated into (None: nothing, the body is
    passed as decoded), read through ``Annotated`` and ``NewType``:

    - a model class itself: a pydantic model (a parametrized generic one, ``Box[int]``,
      is a class of its own), a msgspec Struct, a dataclass;
    - a parametrized generic msgspec Struct or dataclass (``Box[int]``), as it is:
      msgspec validates the type arguments; brokerkit builds the dataclass as a field of
      that type is built (:meth:`Builders.of`: its fields typed by a type variable as
      the type arguments given).
    """
    hint = _supertype(hint)
    if _is_model(hint) or _is_model(typing.get_origin(hint)):
        return hint
    return None


def _name(model: Any) -> str:
    """A model's name in reasons: a parametrized generic's is its class's."""
    named = typing.get_origin(model) or model
    return str(getattr(named, "__name__", repr(named)))


def _models_within(hint: Any, depth: int = 0) -> list[Any]:
    """The model types (those :func:`converter` validates into, a parametrized generic
    one by its class) named inside the type arguments of ``hint``, at any depth
    (``Optional[Model]``, ``list[Model]``, ``list[NewType of Model]``...)."""
    if depth > 20:  # a type that nests without end
        return []
    found = []
    for argument in typing.get_args(hint):
        argument = _supertype(argument)  # Annotated's metadata is no type
        origin = typing.get_origin(argument)
        if _is_model(argument):
            found.append(argument)
        elif _is_model(origin):
            found.append(origin)
        else:
            found.extend(_models_within(argument, depth + 1))
    return found


def _check_body_type(name: str, parameter: str, annotation: Any, body_type: Any) -> None:
    """Refuse a body annotation that holds a model without being one: the worker
    validates into a model class only, so the body would reach the handler as the
    decoded data, never validated, and a bad one would fail the handler (retried)
    instead of being dead-lettered.

    :raises InvalidOption: ``Model | None``, ``list[Model]``, ``dict[str, Model]``...;
        also a generic dataclass holding a pydantic model in its type arguments
        (``Box[Line]``), which its fields of that type variable would take as decoded
        (it builds dataclasses and Structs there); a msgspec Struct
        holding, in its type arguments or its fields, a type msgspec cannot build.
    """
    if body_type is None:
        return
    found = _body_model(body_type)
    if found is not None:
        origin = typing.get_origin(found)
        if _is_struct(origin):
            _check_struct_arguments(name, parameter, annotation, found)
        if _is_struct(origin or found):
            _check_struct_fields(name, parameter, annotation, found)
            return
        held = _models_within(found) if dataclasses.is_dataclass(origin) else []
        held = [m for m in held if not dataclasses.is_dataclass(m) and not _is_struct(m)]
        if held:
            model = _name(held[0])
            raise InvalidOption(
                f"handler {name} annotates its body parameter {parameter!r} with "
                f"{annotation!r}, a generic dataclass whose type arguments hold the model "
                f"{model}: brokerkit builds a dataclass's field of a pydantic model as "
                f"decoded, so {model} would reach the handler unvalidated. Make {model} a "
                "dataclass or a msgspec Struct, or annotate the body with a pydantic model"
            )
        return
    models = _models_within(_supertype(body_type))
    if models:
        model = _name(models[0])
        raise InvalidOption(
            f"handler {name} annotates its body parameter {parameter!r} with {annotation!r}, "
            f"which holds the model {model} without being one: the body would reach the "
            "handler unvalidated. Annotate it with a pydantic model, a msgspec Struct or a "
            f"dataclass itself ({model}, or Annotated[{model}, ...]), or with a type taken "
            "as decoded (dict, list, str, bytes, Any...) and validate it in the handler"
        )


def _is_struct(cls: Any) -> bool:
    """Whether ``cls`` is a msgspec Struct class (msgspec is then imported)."""
    msgspec = sys.modules.get("msgspec")
    return msgspec is not None and isinstance(cls, type) and issubclass(cls, msgspec.Struct)


def _check_struct_arguments(name: str, parameter: str, annotation: Any, struct: Any) -> None:
    """Refuse a parametrized generic msgspec Struct (``Box[Line]``) whose type arguments
    hold a type msgspec cannot build from decoded data (a pydantic model, a plain
    class: what ``msgspec.inspect`` reads as a custom type, which needs a ``dec_hook``
    the worker does not pass), at any depth (``Box[list[Line]]``, ``Box[Order]`` with
    ``Order`` a dataclass with a field ``Line``); or a type msgspec does not support at
    all. msgspec builds what it knows (Structs, dataclasses, attrs classes,
    ``TypedDict``, enums, ``datetime``...): every valid message would otherwise be
    dead-lettered (``Expected `Line`, got `dict```).

    :raises InvalidOption: naming the annotation and the type msgspec cannot build.
    """
    inspect_types = importlib.import_module("msgspec.inspect")
    for argument in typing.get_args(struct):
        try:
            info = inspect_types.type_info(argument)
        except Exception as exc:  # TypeError: a type msgspec does not support
            raise InvalidOption(
                f"handler {name} annotates its body parameter {parameter!r} with "
                f"{annotation!r}, a generic msgspec Struct whose type argument "
                f"{argument!r} msgspec does not support ({type(exc).__name__}: "
                f"{one_line(exc)}): no body could be validated into it"
            ) from None
        custom = _custom_type(info, inspect_types.CustomType)
        if custom is None:
            continue
        what, kind = _unbuildable(custom[0])
        raise InvalidOption(
            f"handler {name} annotates its body parameter {parameter!r} with "
            f"{annotation!r}, a generic msgspec Struct whose type arguments hold {what} "
            f"({kind}), which msgspec cannot build from a message: every message would be "
            f"dead-lettered (Expected `{what}`, got `dict`). Make {what} a msgspec Struct "
            "or a dataclass, or annotate the body with a pydantic model"
        )


def _check_struct_fields(name: str, parameter: str, annotation: Any, struct: Any) -> None:
    """Refuse a msgspec Struct (generic or not) one of whose fields, at any depth,
    holds a type msgspec cannot build from decoded data (see
    :func:`_check_struct_arguments`): ``Order`` with a field ``line: Line``, ``Line``
    a pydantic model; or whose fields msgspec cannot read at all (an annotation that
    does not resolve). Every message would be dead-lettered.

    :raises InvalidOption: naming the annotation, the field and the type.
    """
    inspect_types = importlib.import_module("msgspec.inspect")
    try:
        info = inspect_types.type_info(struct)
    except Exception as exc:  # a field's annotation does not resolve, or is unsupported
        raise InvalidOption(
            f"handler {name} annotates its body parameter {parameter!r} with "
            f"{annotation!r}, a msgspec Struct msgspec cannot read ({type(exc).__name__}: "
            f"{one_line(exc)}): no body could be validated into it. Annotate its fields "
            "with types defined at module level that msgspec supports"
        ) from None
    custom = _custom_type(info, inspect_types.CustomType)
    if custom is None:
        return
    what, kind = _unbuildable(custom[0])
    raise InvalidOption(
        f"handler {name} annotates its body parameter {parameter!r} with {annotation!r}, "
        f"a msgspec Struct whose {custom[1]} holds {what} ({kind}), which msgspec cannot "
        f"build from a message: every message would be dead-lettered (Expected `{what}`, "
        f"got `dict`). Make {what} a msgspec Struct or a dataclass, or annotate the body "
        "with a pydantic model"
    )


def _unbuildable(custom: Any) -> tuple[str, str]:
    """The name of a class msgspec cannot build, and what it is."""
    pydantic = sys.modules.get("pydantic")
    kind = (
        "a pydantic model"
        if pydantic is not None and issubclass(custom, pydantic.BaseModel)
        else "a class msgspec does not know"
    )
    return _name(custom), kind


def _custom_type(info: Any, custom_type: Any) -> tuple[Any, str] | None:
    """The class of the first custom type (``msgspec.inspect.CustomType``: one msgspec
    cannot build without a ``dec_hook``) in the type information ``info``, at any
    depth (the fields of Structs and dataclasses, the items of containers, the members
    of unions), and where: the innermost field holding it (``"field 'line' of
    Order"``; empty if ``info`` is no such field's); None if it holds none. A
    recursive type is looked at once."""
    seen: set[int] = set()
    todo: list[tuple[Any, str]] = [(info, "")]
    while todo:
        node, where = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, custom_type):
            return node.cls, where
        for attribute in ("type", "item_type", "key_type", "value_type"):
            child = getattr(node, attribute, None)
            if child is not None:
                todo.append((child, where))
        todo.extend((t, where) for t in getattr(node, "types", None) or ())
        todo.extend((t, where) for t in getattr(node, "item_types", None) or ())
        owner = _name(getattr(node, "cls", None))
        for field in reversed(getattr(node, "fields", None) or ()):  # the first on top
            todo.append((field.type, f"field {field.name!r} of {owner}"))
    return None


def _is_delivery(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, (Delivery, AsyncDelivery))


def _is_model(body_type: Any) -> bool:
    """Whether ``body_type`` is a type :func:`converter` validates into: a pydantic
    model, a msgspec Struct or a dataclass."""
    if not isinstance(body_type, type) or typing.get_origin(body_type) is not None:
        return False  # (list[int] passes for a type on Python 3.10)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(body_type, pydantic.BaseModel):
        return True
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(body_type, msgspec.Struct):
        return True
    return dataclasses.is_dataclass(body_type)


def converter(body_type: Any) -> Converter | None:
    """The function that turns a decoded body into ``body_type`` (None: pass it as it is);
    see :func:`_body_model` for what is validated.

    :raises InvalidOption: ``body_type`` is a dataclass with a field brokerkit cannot
        build (see :class:`_Builders`).
    """
    model = _body_model(body_type)
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
    model = _body_model(body_type)
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
            raise InvalidBody(f"{model.__name__}: {one_line(exc)}") from exc

    return convert


def _unreadable_json(error: BaseException | None) -> bool:
    """Whether a model's own JSON parser refused a payload as JSON it cannot read (not
    its content): pydantic's ``json_invalid``, msgspec's ``DecodeError`` that is no
    ``ValidationError``."""
    errors = getattr(error, "errors", None)
    if callable(errors):  # pydantic's ValidationError
        try:
            return any(e.get("type") == "json_invalid" for e in errors())
        except Exception:
            return False
    kind = type(error)
    return kind.__name__ == "DecodeError" and kind.__module__.startswith("msgspec")


def _msgspec(struct: Any, msgspec: Any, *, from_json: bool = False) -> Converter:
    def convert(body: Any) -> Any:
        try:
            if from_json or isinstance(body, (bytes, str)):
                return msgspec.json.decode(body, type=struct)
            # Lax: msgpack carries what JSON would (a datetime as text, say).
            return msgspec.convert(body, struct, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidBody(f"{_name(struct)}: {one_line(exc)}") from exc

    return convert


def _dataclass(model: Any) -> Converter:
    """A dataclass, or a parametrized generic one (built as a field of that type is: its
    fields of a type variable as the type arguments given)."""
    build = Builders().dataclass(model)
    name = _name(model)

    def convert(body: Any) -> Any:
        try:
            return build(body, 1)  # the body is the first level
        except Misfit as exc:
            raise InvalidBody(f"{name}: {exc.text}{exc.where()}") from (exc.__cause__ or exc)

    return convert
