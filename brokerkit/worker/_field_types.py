"""The type each ``__init__`` field of a dataclass is built as, read once, at
registration, and what :class:`~brokerkit.worker._dataclass_body.Builders` asks of a type:
the fields ``__init__`` takes (``InitVar`` pseudo-fields too) and their resolved type
hints; the types of a generic dataclass's type variables, by class, read through its
bases as written (``__orig_bases__``), and a hint with them replaced; whether a type is
a dataclass or a msgspec Struct, holds one in its type arguments, or keeps a type
variable. Nothing is built here (:mod:`brokerkit.worker._dataclass_body` builds)."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from collections.abc import Mapping
from typing import Any

from brokerkit.exceptions import InvalidOption

__all__ = ["unannotated"]


def unannotated(hint: Any) -> Any:
    """``hint`` without the ``Annotated[...]`` around it, if any."""
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint


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


def _dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _struct_type(hint: Any) -> bool:
    """Whether ``hint`` is a msgspec Struct class (never imports msgspec)."""
    msgspec = sys.modules.get("msgspec")
    return msgspec is not None and isinstance(hint, type) and issubclass(hint, msgspec.Struct)


def _built_type(hint: Any) -> bool:
    """Whether ``hint`` is a class a body's value is built into: a dataclass or a
    msgspec Struct."""
    return _dataclass_type(hint) or _struct_type(hint)


def _held_dataclass(hint: Any) -> Any:
    """The first dataclass or msgspec Struct named inside the type arguments of
    ``hint``, at any depth (None: none). A loop, not a recursion: a polymorphically
    recursive type's arguments nest as deep as
    :data:`~brokerkit.worker._dataclass_body.GENERIC_NESTING` lets them."""
    todo = list(reversed(typing.get_args(hint)))
    while todo:
        argument = unannotated(todo.pop())
        for candidate in (argument, typing.get_origin(argument)):
            if _built_type(candidate):
                return candidate
        todo.extend(reversed(typing.get_args(argument)))
    return None


def _substituted(hint: Any, arguments: Mapping[Any, Any]) -> Any:
    """``hint`` with the type variables ``arguments`` maps replaced by their types
    (``T | None`` with ``{T: Line}``: ``Line | None``); as it is when it holds none,
    or cannot be subscripted."""
    if not arguments:
        return hint
    if isinstance(hint, typing.TypeVar):
        return arguments.get(hint, hint)
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint  # a class (a bare generic class is not parametrized here)
    parameters = getattr(hint, "__parameters__", None)
    if not parameters:
        return hint
    try:
        return hint[tuple(arguments.get(p, p) for p in parameters)]
    except TypeError:  # a ParamSpec, a TypeVarTuple...: left as it is
        return hint


def _free_type_variable(hint: Any) -> bool:
    """Whether ``hint`` still holds a type variable (``T``, ``list[T] | None``); a
    class itself (a bare generic one, ``Box``) holds none."""
    if isinstance(hint, typing.TypeVar):
        return True
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return False
    return bool(getattr(hint, "__parameters__", ()))


def _type_variables(cls: Any, arguments: Mapping[Any, Any]) -> dict[Any, Mapping[Any, Any]]:
    """The types of the type variables of ``cls`` (``arguments``) and of each class it
    derives from, by class, read through the bases as written (``__orig_bases__``): of
    ``class Child(Box[U])`` with ``{U: Line}``, ``Box``'s ``{T: Line}``; of ``class
    LineBox(Box[Line])``, ``Box``'s ``{T: Line}`` too. A base named bare (``Box``) maps
    nothing: its type variables stay as they are."""
    found: dict[Any, Mapping[Any, Any]] = {cls: arguments}
    todo = [cls]
    while todo:
        current = todo.pop()
        given = found[current]
        written = vars(current).get("__orig_bases__", current.__bases__)
        for base in written:
            origin = typing.get_origin(base)
            if origin is None:  # a class named bare
                if isinstance(base, type) and base not in found:
                    found[base] = {}
                    todo.append(base)
                continue
            if not isinstance(origin, type) or origin is typing.Generic or origin in found:
                continue
            parameters = getattr(origin, "__parameters__", ())
            types_given = [_substituted(a, given) for a in typing.get_args(base)]
            found[origin] = dict(zip(parameters, types_given, strict=False))
            todo.append(origin)
    return found


def _declared_by(cls: Any, field_name: str) -> Any:
    """The class whose annotation of ``field_name`` is the field's (the first in the
    MRO annotating it, as ``typing.get_type_hints`` reads it)."""
    for base in cls.__mro__:
        if field_name in vars(base).get("__annotations__", {}):
            return base
    return cls


def _field_hints(cls: Any, names: set[str]) -> dict[str, Any]:
    """The resolved type hints of the dataclass's fields ``names`` (its ``__init__``
    fields: ``InitVar[X]`` as such). Other annotations (a ``ClassVar``, an
    ``init=False`` field) are never built from a body and need not resolve.

    :raises InvalidOption: one of ``names`` does not resolve (a type defined inside a
        function, under ``from __future__ import annotations``; one imported only for
        type checkers): its value would reach the handler as decoded data.
    """
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:
        pass  # some annotation does not resolve: those of ``names`` one by one
    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):  # as get_type_hints does: a subclass's last
        namespace = dict(getattr(sys.modules.get(base.__module__), "__dict__", {}))
        for field_name, annotation in inspect.get_annotations(base).items():
            if field_name not in names:
                continue
            if not isinstance(annotation, str):
                hints[field_name] = annotation
                continue
            try:
                hints[field_name] = eval(annotation, namespace, dict(vars(base)))
            except Exception as exc:
                raise InvalidOption(
                    f"the annotation {annotation!r} of field {field_name!r} of dataclass "
                    f"{cls.__name__} does not resolve in its module ({type(exc).__name__}: "
                    f"{exc}): the field would reach the handler as decoded data; define the "
                    "type at module level and import it at run time (not only under "
                    "TYPE_CHECKING), or annotate with the class itself"
                ) from None
    return hints
