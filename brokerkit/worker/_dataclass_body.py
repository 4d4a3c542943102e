"""Building a dataclass handler parameter from a decoded body (JSON's or msgpack's
dicts, lists, str and numbers) by its fields' resolved type hints, nested: worked out
once, when the handler is registered (see :class:`Builders`), with a :class:`Misfit`
naming where a body does not fit. brokerkit's own, never pydantic's or msgspec's, so
that a dataclass is built the same with or without those extras (a msgspec Struct a
field names, which exists only where msgspec is installed, is validated by msgspec).

A body is built :data:`MAX_DEPTH` containers deep at most: a recursive dataclass
(``child: Node | None``) nested deeper does not fit, with a reason rather than a
``RecursionError``."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

from brokerkit.exceptions import InvalidOption
from brokerkit.worker._body_types import struct_fault
from brokerkit.worker._builds import (
    MAX_DEPTH,
    Misfit,
    _array,
    _as_tuple,
    _beyond_recursion_limit,
    _Build,
    _dict,
    _expected,
    _fixed,
    _optional,
    _struct,
    _too_deep,
)
from brokerkit.worker._error_text import masked_text, shortened
from brokerkit.worker._field_types import (
    _dataclass_type,
    _declared_by,
    _field_hints,
    _free_type_variable,
    _held_dataclass,
    _init_fields,
    _struct_type,
    _substituted,
    _type_variables,
    unannotated,
)
from brokerkit.worker._tracebacks import prints_as_it_is

__all__ = ["GENERIC_NESTING", "MAX_DEPTH", "Builders", "Misfit"]

#: How many generic dataclasses parametrized (``Box[Line]``) are worked out one within
#: another's fields at registration, at most. Only a polymorphically recursive one
#: (``Node[T]`` with ``child: Node[list[T]] | None``, which names a new type at each
#: level) goes deeper: past that, a parametrized one is built as its class (its fields
#: of a type variable as decoded), or refused if its type arguments hold a dataclass or
#: a msgspec Struct (those would reach the handler as decoded data).
GENERIC_NESTING = 24


class _StructRefused(Exception):
    """A msgspec Struct a dataclass field holds that msgspec cannot build."""

    def __init__(self, struct: Any, text: str) -> None:
        super().__init__(text)
        self.struct = struct
        self.text = text


class Builders:
    """The conversions of decoded data (JSON's or msgpack's: dicts, lists, str, numbers)
    into the types of a dataclass's fields, worked out once, at registration:

    - a dataclass from an object (a mapping): its ``__init__`` fields and ``InitVar``
      pseudo-fields, each built by its resolved type hint; missing or unknown fields
      do not fit. Keys naming its ``init=False`` fields (which ``publish`` writes) are
      left out: the class sets those itself. A generic dataclass parametrized
      (``Box[Line | None]``) has its fields typed by a type variable built as the
      type arguments given (``item: T`` as ``Line | None``), those declared in a
      generic base by the base's type variables as its bases map them (``class
      Child(Box[U])``: ``Child[Line]``'s ``item: T`` as ``Line``). Generic dataclasses
      are worked out :data:`GENERIC_NESTING` deep, one within another's fields;
    - a msgspec Struct (a generic one parametrized too) from what msgspec converts
      into it (laxly: an int from a numeric str, as from a msgpack body), if msgspec
      can build it (checked as a Struct body is);
    - ``list[X]`` from an array, ``tuple[X, ...]``, ``tuple[X, Y]`` (of that length) and
      ``tuple`` from an array, ``dict[K, X]`` from an object (its keys as decoded),
      ``X | None``; ``Annotated[X, ...]`` and a ``NewType`` of X as X;
    - any other type: the value as decoded, unchecked (an int field gets what the body
      holds).

    A container is only looked at where what it holds needs building (``list[int]``
    takes any value as decoded, ``list[Point]`` requires an array). One built deeper
    than :data:`MAX_DEPTH` does not fit; a build never raises ``RecursionError``, even
    under a recursion limit set too low for that depth (that does not fit either).

    :raises InvalidOption: a field's annotation does not resolve, or holds a dataclass
        or a msgspec Struct in a form not built (``Sequence[Point]``, ``Point | Line``,
        ``set[Point]``), or a pydantic model (``Line``, ``list[Line]``, or through a
        type variable): it would reach the handler as decoded data; or a field keeps
        a type variable its bases do not map while the type arguments hold a dataclass
        or a Struct; or holds a Struct msgspec cannot build (a field of a pydantic
        model); or a polymorphically recursive generic dataclass nests past
        :data:`GENERIC_NESTING` with a dataclass or a Struct in its type arguments.
    """

    def __init__(self) -> None:
        # by dataclass (a generic one parametrized: by its alias), so that one may hold
        # itself
        self._built: dict[Any, _Build] = {}
        # how many parametrized generic dataclasses are being worked out, one within
        # another's fields (see GENERIC_NESTING)
        self._generic_nesting = 0

    def of(self, hint: Any) -> _Build | None:
        """How to build ``hint`` (None: take the value as decoded)."""
        hint = unannotated(hint)
        while hasattr(hint, "__supertype__"):  # a NewType
            hint = unannotated(hint.__supertype__)
        origin = typing.get_origin(hint)
        arguments = typing.get_args(hint)
        if _dataclass_type(hint) or _dataclass_type(origin):  # a generic one parametrized
            return self.dataclass(hint)
        if _struct_type(hint) or _struct_type(origin):
            _check_struct(hint)
            return _struct(hint)
        if hint is tuple or hint is typing.Tuple:  # noqa: UP006 (the bare one, as a value)
            return _as_tuple
        if origin is tuple:
            if len(arguments) == 2 and arguments[1] is Ellipsis:
                item = self.of(arguments[0])
                return _as_tuple if item is None else _array(item, tuple)
            if arguments == ((),):  # tuple[()] on Python 3.10
                arguments = ()
            return _fixed([self.of(a) for a in arguments])
        if origin is list and arguments:
            item = self.of(arguments[0])
            return None if item is None else _array(item, list)
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

    def dataclass(self, model: Any) -> _Build:
        """How to build the dataclass ``model`` from an object: called with the value
        and its depth, 1 for the body itself. ``model`` may be a generic dataclass
        parametrized (``Box[Line]``): its fields typed by its type variables are built
        as the type arguments given (``item: T`` as ``Line``); those it leaves out (a
        bare ``Box``) are taken as decoded."""
        if model in self._built:
            return self._built[model]
        cls = typing.get_origin(model) or model
        generic = cls is not model
        if generic and self._generic_nesting >= GENERIC_NESTING:
            _refuse_nesting(model)
            return self.dataclass(cls)  # its type variables as decoded
        arguments = dict(
            zip(getattr(cls, "__parameters__", ()), typing.get_args(model), strict=False)
        )
        fields: dict[str, _Build | None] = {}
        left_out = {f.name for f in dataclasses.fields(cls) if not f.init}
        required: set[str] = set()

        def build(value: Any, depth: int) -> Any:
            if depth > MAX_DEPTH:
                raise _too_deep()
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
                raise Misfit("; ".join(parts))
            arguments = {}
            for key, item in value.items():
                if key in fields:
                    field_build = fields[key]
                    if field_build is None:
                        arguments[key] = item
                        continue
                    try:
                        arguments[key] = field_build(item, depth + 1)
                    except Misfit as exc:
                        exc.path.append(f".{key}")
                        raise
                    except RecursionError:
                        # A recursive type recurs through here. Should making the
                        # misfit hit the limit again, a build further up makes it.
                        misfit = _beyond_recursion_limit()
                        misfit.path.append(f".{key}")
                        raise misfit from None
            try:
                return cls(**arguments)
            except Exception as exc:  # raised by a __post_init__ check
                text = shortened(masked_text(exc))  # f"bad value {value!r}": '...'
                if not isinstance(exc, (TypeError, ValueError)):  # an assert...: named
                    text = f"{type(exc).__name__}: {text}"
                misfit = Misfit(text)
                if prints_as_it_is(exc):
                    raise misfit from exc
            # A validation error of pydantic's or msgspec's (a TypeAdapter's check in
            # __post_init__), or an error whose text quotes a value: raised outside the
            # except, not its cause nor its context (a span's exception prints those).
            raise misfit

        self._built[model] = build
        self._generic_nesting += generic
        try:
            self._work_out(model, cls, arguments, fields, required)
        finally:
            self._generic_nesting -= generic
        return build

    def _work_out(
        self,
        model: Any,
        cls: Any,
        arguments: Mapping[Any, Any],
        fields: dict[str, _Build | None],
        required: set[str],
    ) -> None:
        """Fill in ``fields`` (how to build each ``__init__`` field of ``cls``) and
        ``required`` (those without a default): each field's hint with the type
        variables of the class that declares it replaced by their types (a generic
        base's, through the bases as written: see
        :func:`~brokerkit.worker._field_types._type_variables`)."""
        name = cls.__name__
        init_fields = _init_fields(cls)
        hints = _field_hints(cls, set(init_fields))
        variables = _type_variables(cls, arguments)
        for field_name, field in init_fields.items():
            hint = hints[field_name]
            if isinstance(hint, dataclasses.InitVar):
                hint = hint.type
            declared_by = _declared_by(cls, field_name)
            written, hint = hint, _substituted(hint, variables.get(declared_by, {}))
            held_model = _pydantic_held(hint)
            if held_model is not None:
                raise InvalidOption(
                    _pydantic_refused(
                        model, cls, declared_by, field_name, written, hint, held_model
                    )
                )
            held = _held_dataclass(model)
            if held is not None and _free_type_variable(hint):
                where = "" if declared_by is cls else f" in its base {declared_by.__name__}"
                raise InvalidOption(
                    f"field {field_name!r} of dataclass {name}{_as_given(model)} is annotated "
                    f"{_shown(hint)}{where}, a type variable brokerkit cannot map to the type "
                    f"arguments given (read through the bases as written), which hold the "
                    f"{_what(held)} {held.__name__}: it would reach the handler as decoded "
                    "data. Derive the class from its generic base parametrized with its own "
                    "type variables (class Child(Box[T])), or annotate the body with a class "
                    "that names the types itself"
                )
            try:
                fields[field_name] = self.of(hint)
            except _StructRefused as exc:
                struct = _shown(exc.struct)
                held_as = "" if exc.struct is hint else f", which holds {struct}"
                raise InvalidOption(
                    f"field {field_name!r} of dataclass {name}{_as_given(model)} is "
                    f"annotated {_shown(hint)}{held_as}: {struct} is a msgspec Struct "
                    f"{exc.text}"
                ) from None
            held = _held_dataclass(hint) if fields[field_name] is None else None
            if held is not None:
                raise InvalidOption(
                    f"field {field_name!r} of dataclass {name} is annotated {hint!r}, which "
                    f"holds the {_what(held)} {held.__name__} in a form brokerkit does not build "
                    "(it builds a dataclass, a msgspec Struct, list[X], tuple[X, ...], "
                    "tuple[X, Y], dict[str, X] and X | None, nested): it would reach the "
                    "handler as decoded data. Annotate it with one of those, or with a type "
                    "taken as decoded (dict, list, Any...) and build it in the handler"
                )
            if field.default is dataclasses.MISSING and (
                field.default_factory is dataclasses.MISSING
            ):
                required.add(field_name)


def _shown(hint: Any) -> str:
    """``hint`` in a reason: a class or a type variable by its name, any other type as
    typing shows it."""
    if isinstance(hint, typing.TypeVar) or (
        isinstance(hint, type) and typing.get_origin(hint) is None
    ):
        return hint.__name__
    return repr(hint)


def _as_given(model: Any) -> str:
    """`` (as Box[Line])`` for a generic dataclass parametrized; empty for a class."""
    return "" if typing.get_origin(model) is None else f" (as {_shown(model)})"


def _what(built_type: Any) -> str:
    return "dataclass" if _dataclass_type(built_type) else "msgspec Struct"


def _pydantic_refused(
    model: Any, cls: Any, declared_by: Any, field_name: str, written: Any, hint: Any, held: Any
) -> str:
    """Why the field ``field_name`` of ``cls`` (as the body ``model`` gives it), annotated
    ``written`` and ``hint`` once its type variables are replaced, which holds the
    pydantic model ``held``, is refused."""
    where = "" if declared_by is cls else f" in its base {declared_by.__name__}"
    made = f", which the type arguments given make {_shown(hint)}" if written != hint else ""
    model_name = held.__name__
    return (
        f"field {field_name!r} of dataclass {cls.__name__}{_as_given(model)} is annotated "
        f"{_shown(written)}{where}{made}: {model_name} is a pydantic model, and brokerkit "
        f"builds a dataclass itself, never with pydantic, so {model_name} would reach the "
        f"handler unvalidated, as decoded data (a dict). Make {model_name} a dataclass or "
        "a msgspec Struct, annotate the field with a type taken as decoded (dict, Any...) "
        "and validate it in the handler, or annotate the body with a pydantic model"
    )


def _pydantic_held(hint: Any, depth: int = 0) -> Any:
    """The first pydantic model class ``hint`` is or holds (``Line``, ``list[Line]``,
    ``Line | None``, through ``Annotated`` and ``NewType``), None if none (or pydantic is
    not imported: then no class is one). The type arguments of a generic dataclass or
    Struct are not looked into: its own fields are checked when it is built."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or depth > 20:  # a type that nests without end
        return None
    hint = unannotated(hint)
    while hasattr(hint, "__supertype__"):  # a NewType
        hint = unannotated(hint.__supertype__)
    if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        return hint
    origin = typing.get_origin(hint)
    if _dataclass_type(origin) or _struct_type(origin):
        return None
    for argument in typing.get_args(hint):
        found = _pydantic_held(argument, depth + 1)
        if found is not None:
            return found
    return None


def _refuse_nesting(model: Any) -> None:
    """Refuse the generic dataclass parametrized ``model``, worked out past
    :data:`GENERIC_NESTING` generic dataclasses deep, if its type arguments hold a
    dataclass or a msgspec Struct (built as its class, those would reach the handler as
    decoded data).

    :raises InvalidOption: they do.
    """
    held = _held_dataclass(model)
    if held is None:
        return
    raise InvalidOption(
        f"the generic dataclass {model!r} is nested within more than {GENERIC_NESTING} "
        "generic dataclasses parametrized (a polymorphically recursive one, Node[T] with "
        "a field Node[list[T]], names a new type at each level): brokerkit works out that "
        f"many, and past them would build it with its type variables as decoded, where its "
        f"type arguments hold the {_what(held)} {held.__name__}. Annotate the recursive "
        "field with a type taken as decoded, or make the type recursive as itself "
        "(Node[T] | None)"
    )


def _check_struct(struct: Any) -> None:
    """Raise :class:`_StructRefused` if msgspec cannot build the Struct ``struct`` from
    decoded data (the check a Struct body gets at registration)."""
    fault = struct_fault(struct)
    if fault is not None:
        raise _StructRefused(struct, f"{fault.text}. {fault.advice}")
