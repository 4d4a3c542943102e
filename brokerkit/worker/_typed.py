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
import inspect
import reprlib
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from brokerkit._delivery import Delivery
from brokerkit._delivery_async import AsyncDelivery
from brokerkit._serializers import is_json
from brokerkit.exceptions import InvalidOption, SerializationError

__all__ = ["Binding", "InvalidBody", "bind", "error_text"]


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
            raise InvalidBody(f"{name}: {type(exc).__name__}: {_one_line(exc)}") from exc


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
    try:
        hints = typing.get_type_hints(function, include_extras=True)
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
            hint = _resolve(function, name, parameter.name, hint)
        annotation, hint = hint, _unannotated(hint)
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


def _resolve(function: Callable[..., Any], name: str, parameter: str, annotation: str) -> Any:
    """The type a string annotation names, in the handler's module.

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


def _unannotated(hint: Any) -> Any:
    """``hint`` without the ``Annotated[...]`` around it, if any."""
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _models_within(hint: Any, depth: int = 0) -> list[Any]:
    """The model types (those :func:`converter` validates into) named inside the type
    arguments of ``hint``, at any depth (``Optional[Model]``, ``list[Model]``...)."""
    if depth > 20:  # a type that nests without end
        return []
    found = []
    for argument in typing.get_args(hint):
        argument = _unannotated(argument)  # Annotated's metadata is no type
        if _is_model(argument):
            found.append(argument)
        else:
            found.extend(_models_within(argument, depth + 1))
    return found


def _check_body_type(name: str, parameter: str, annotation: Any, body_type: Any) -> None:
    """Refuse a body annotation that holds a model without being one: the worker
    validates into a model class only, so the body would reach the handler as the
    decoded data, never validated, and a bad one would fail the handler (retried)
    instead of being dead-lettered.

    :raises InvalidOption: ``Model | None``, ``list[Model]``, ``dict[str, Model]``...
    """
    if body_type is None or _is_model(body_type):
        return
    models = _models_within(body_type)
    if models:
        model = getattr(models[0], "__name__", repr(models[0]))
        raise InvalidOption(
            f"handler {name} annotates its body parameter {parameter!r} with {annotation!r}, "
            f"which holds the model {model} without being one: the body would reach the "
            "handler unvalidated. Annotate it with a pydantic model, a msgspec Struct or a "
            f"dataclass itself ({model}, or Annotated[{model}, ...]), or with a type taken "
            "as decoded (dict, list, str, bytes, Any...) and validate it in the handler"
        )


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
    """The function that turns a decoded body into ``body_type`` (None: pass it as it is).

    :raises InvalidOption: ``body_type`` is a dataclass with a field brokerkit cannot
        build (see :class:`_Builders`).
    """
    if not _is_model(body_type):
        return None
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(body_type, pydantic.BaseModel):
        return _pydantic(body_type, pydantic.ValidationError)
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(body_type, msgspec.Struct):
        return _msgspec(body_type, msgspec)
    if dataclasses.is_dataclass(body_type):
        return _dataclass(body_type)
    return None


def json_converter(body_type: Any) -> Converter | None:
    """The function that validates a JSON payload (bytes) into ``body_type``, for the
    types whose library reads JSON itself (pydantic models, msgspec Structs); None
    for the others."""
    if not _is_model(body_type):
        return None
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(body_type, pydantic.BaseModel):
        return _pydantic(body_type, pydantic.ValidationError, from_json=True)
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(body_type, msgspec.Struct):
        return _msgspec(body_type, msgspec, from_json=True)
    return None


def _pydantic(model: Any, error: type[Exception], *, from_json: bool = False) -> Converter:
    def convert(body: Any) -> Any:
        try:
            if from_json or isinstance(body, (bytes, str)):
                return model.model_validate_json(body)
            return model.model_validate(body)
        except error as exc:
            raise InvalidBody(f"{model.__name__}: {_one_line(exc)}") from exc

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
            raise InvalidBody(f"{struct.__name__}: {_one_line(exc)}") from exc

    return convert


#: The marker of an ``InitVar`` pseudo-field; :func:`dataclasses.fields` leaves those
#: out, and no public function lists them.
_INITVAR = getattr(dataclasses, "_FIELD_INITVAR", None)


def _init_fields(cls: Any) -> dict[str, dataclasses.Field[Any]]:
    """The fields a dataclass's ``__init__`` takes: its ``init`` fields and its
    ``InitVar`` pseudo-fields (passed to ``__post_init__``)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for f in getattr(cls, "__dataclass_fields__", {}).values():
        if _INITVAR is not None and getattr(f, "_field_type", None) is _INITVAR:
            fields[f.name] = f
    return fields


def _dataclass(cls: Any) -> Converter:
    build = _Builders().dataclass(cls)

    def convert(body: Any) -> Any:
        try:
            return build(body)
        except _Misfit as exc:
            raise InvalidBody(f"{cls.__name__}: {exc.text}{exc.where()}") from (
                exc.__cause__ or exc
            )

    return convert


#: A value's conversion into one type; raises :class:`_Misfit` when it does not fit.
_Build = Callable[[Any], Any]

#: A dict key in the path of a misfit: shortened.
_key = reprlib.Repr()
_key.maxstring = _key.maxlong = _key.maxother = 40


class _Misfit(Exception):
    """A value that does not fit its type. ``path`` is filled in on the way out, one
    step (``.field``, ``[0]``, ``['key']``) a container, innermost first."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
        self.path: list[str] = []

    def where(self) -> str:
        """`` at $.lines[0].start``, shortened; empty for the body itself."""
        path = "".join(reversed(self.path))
        if len(path) > 200:  # a recursive type, deep
            path = f"{path[:100]}...{path[-100:]}"
        return f" at ${path}" if path else ""


def _expected(expected: str, value: Any) -> _Misfit:
    return _Misfit(f"expected {expected}, got {type(value).__name__}")


def _dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _held_dataclass(hint: Any, depth: int = 0) -> Any:
    """The first dataclass named inside the type arguments of ``hint`` (None: none)."""
    if depth > 20:  # a type that nests without end
        return None
    for argument in typing.get_args(hint):
        argument = _unannotated(argument)
        for candidate in (argument, typing.get_origin(argument)):
            if _dataclass_type(candidate):
                return candidate
        found = _held_dataclass(argument, depth + 1)
        if found is not None:
            return found
    return None


class _Builders:
    """The conversions of decoded data (JSON's or msgpack's: dicts, lists, str, numbers)
    into the types of a dataclass's fields, worked out once, at registration:

    - a dataclass from an object (a mapping): its ``__init__`` fields and ``InitVar``
      pseudo-fields, each built by its resolved type hint; missing or unknown fields
      do not fit. Keys naming its ``init=False`` fields (which ``publish`` writes) are
      left out: the class sets those itself;
    - ``list[X]`` from an array, ``tuple[X, ...]``, ``tuple[X, Y]`` (of that length) and
      ``tuple`` from an array, ``dict[K, X]`` from an object (its keys as decoded),
      ``X | None``; ``Annotated[X, ...]`` and a ``NewType`` of X as X;
    - any other type: the value as decoded, unchecked (an int field gets what the body
      holds).

    A container is only looked at where what it holds needs building (``list[int]``
    takes any value as decoded, ``list[Point]`` requires an array).

    :raises InvalidOption: a field's annotation does not resolve, or holds a dataclass
        in a form not built (``Sequence[Point]``, ``Point | Line``, ``set[Point]``): it
        would reach the handler as decoded data.
    """

    def __init__(self) -> None:
        self._built: dict[Any, _Build] = {}  # by dataclass, so that one may hold itself

    def of(self, hint: Any) -> _Build | None:
        """How to build ``hint`` (None: take the value as decoded)."""
        hint = _unannotated(hint)
        while hasattr(hint, "__supertype__"):  # a NewType
            hint = _unannotated(hint.__supertype__)
        origin = typing.get_origin(hint)
        arguments = typing.get_args(hint)
        if _dataclass_type(hint):
            return self.dataclass(hint)
        if _dataclass_type(origin):  # a generic dataclass: its type variables as decoded
            return None if _held_dataclass(hint) else self.dataclass(origin)
        if hint is tuple or hint is typing.Tuple:  # noqa: UP006 (the bare one, as a value)
            return _variadic(None)
        if origin is tuple:
            if len(arguments) == 2 and arguments[1] is Ellipsis:
                return _variadic(self.of(arguments[0]))
            if arguments == ((),):  # tuple[()] on Python 3.10
                arguments = ()
            return _fixed([self.of(a) for a in arguments])
        if origin is list and arguments:
            item = self.of(arguments[0])
            return None if item is None else _list(item)
        if origin is dict and len(arguments) == 2:
            value = self.of(arguments[1])
            keep_keys = self.of(arguments[0]) is None
            return _dict(value) if value is not None and keep_keys else None
        if origin is typing.Union or origin is types.UnionType:
            members = [a for a in arguments if a is not type(None)]
            if len(members) != 1:
                return None  # which one? refused if it holds a dataclass
            inner = self.of(members[0])
            return None if inner is None else _optional(inner)
        return None

    def dataclass(self, cls: Any) -> _Build:
        """How to build the dataclass ``cls`` from an object."""
        if cls in self._built:
            return self._built[cls]
        fields: dict[str, _Build | None] = {}
        left_out = {f.name for f in dataclasses.fields(cls) if not f.init}
        required: set[str] = set()
        name = cls.__name__

        def build(value: Any) -> Any:
            if not isinstance(value, Mapping):
                raise _expected("an object", value)
            unknown = sorted(str(k) for k in value if k not in fields and k not in left_out)
            missing = sorted(required - set(value))
            if unknown or missing:
                parts = []
                if missing:
                    parts.append(f"missing field(s) {', '.join(missing)}")
                if unknown:
                    parts.append(f"unknown field(s) {', '.join(unknown)}")
                raise _Misfit("; ".join(parts))
            arguments = {}
            for key, item in value.items():
                if key in fields:
                    field_build = fields[key]
                    if field_build is None:
                        arguments[key] = item
                        continue
                    try:
                        arguments[key] = field_build(item)
                    except _Misfit as exc:
                        exc.path.append(f".{key}")
                        raise
            try:
                return cls(**arguments)
            except (TypeError, ValueError) as exc:  # raised by a __post_init__ check
                raise _Misfit(_one_line(exc)) from exc
            except Exception as exc:  # an assert in __post_init__...: named
                raise _Misfit(f"{type(exc).__name__}: {_one_line(exc)}") from exc

        self._built[cls] = build
        hints = _field_hints(cls)
        for field_name, field in _init_fields(cls).items():
            hint = hints[field_name]
            if isinstance(hint, dataclasses.InitVar):
                hint = hint.type
            fields[field_name] = self.of(hint)
            held = _held_dataclass(hint) if fields[field_name] is None else None
            if held is not None:
                raise InvalidOption(
                    f"field {field_name!r} of dataclass {name} is annotated {hint!r}, which "
                    f"holds the dataclass {held.__name__} in a form brokerkit does not build "
                    "(it builds a dataclass, list[X], tuple[X, ...], tuple[X, Y], "
                    "dict[str, X] and X | None, nested): it would reach the handler as "
                    "decoded data. Annotate it with one of those, or with a type taken as "
                    "decoded (dict, list, Any...) and build it in the handler"
                )
            if field.default is dataclasses.MISSING and (
                field.default_factory is dataclasses.MISSING
            ):
                required.add(field_name)
        return build


def _field_hints(cls: Any) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields (``InitVar[X]`` as such).

    :raises InvalidOption: one does not resolve (a type defined inside a function,
        under ``from __future__ import annotations``; one imported only for type
        checkers): its value would reach the handler as decoded data.
    """
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        error = exc
    for base in reversed(cls.__mro__):  # which one: resolved one by one, as above
        namespace = dict(getattr(sys.modules.get(base.__module__), "__dict__", {}))
        for field_name, annotation in inspect.get_annotations(base).items():
            if not isinstance(annotation, str):
                continue
            try:
                eval(annotation, namespace, dict(vars(base)))
            except Exception as exc:
                raise InvalidOption(
                    f"the annotation {annotation!r} of field {field_name!r} of dataclass "
                    f"{cls.__name__} does not resolve in its module ({type(exc).__name__}: "
                    f"{exc}): the field would reach the handler as decoded data; define the "
                    "type at module level, or annotate with the class itself"
                ) from None
    raise InvalidOption(
        f"the field annotations of dataclass {cls.__name__} do not resolve "
        f"({type(error).__name__}: {error})"
    ) from None


def _list(item: _Build) -> _Build:
    def build(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _expected("an array", value)
        built = []
        for index, element in enumerate(value):
            try:
                built.append(item(element))
            except _Misfit as exc:
                exc.path.append(f"[{index}]")
                raise
        return built

    return build


def _variadic(item: _Build | None) -> _Build:
    def build(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _expected("an array", value)
        return tuple(value) if item is None else tuple(_list(item)(value))

    return build


def _fixed(items: list[_Build | None]) -> _Build:
    def build(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _expected("an array", value)
        if len(value) != len(items):
            raise _Misfit(f"expected an array of {len(items)} items, got {len(value)}")
        built = []
        for index, (item, element) in enumerate(zip(items, value, strict=True)):
            try:
                built.append(element if item is None else item(element))
            except _Misfit as exc:
                exc.path.append(f"[{index}]")
                raise
        return tuple(built)

    return build


def _dict(item: _Build) -> _Build:
    def build(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _expected("an object", value)
        built = {}
        for key, element in value.items():
            try:
                built[key] = item(element)
            except _Misfit as exc:
                exc.path.append(f"[{_key.repr(key)}]")
                raise
        return built

    return build


def _optional(inner: _Build) -> _Build:
    def build(value: Any) -> Any:
        return None if value is None else inner(value)

    return build


def error_text(exc: BaseException) -> str:
    """``str(exc)``, or ``<TypeName: str() failed>`` when that raises: the text of an
    error that never fails (an error's own ``__str__`` may be broken)."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def _one_line(exc: BaseException) -> str:
    text = " ".join(error_text(exc).split())
    return text if len(text) <= 500 else text[:500] + "..."
