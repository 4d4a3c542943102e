"""What a handler's body annotation means, read once, at registration: the model it
is validated into (:func:`body_model`: a pydantic model, a msgspec Struct, a dataclass,
through ``Annotated`` and ``NewType``), and the annotations refused because no body
could be validated into them as the handler expects (:func:`check_body_type`): one
holding a model without being one, a generic dataclass holding a pydantic model, a
msgspec Struct holding a type msgspec cannot build. pydantic and msgspec are never
imported here: a class of theirs is recognised only once its library is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import typing
from typing import Any

from brokerkit.exceptions import InvalidOption
from brokerkit.worker._error_text import one_line
from brokerkit.worker._field_types import unannotated

__all__ = ["StructFault", "body_model", "check_body_type", "model_name", "struct_fault"]


def _supertype(hint: Any) -> Any:
    """``hint`` without the ``NewType`` (and ``Annotated``) around it, if any: what it
    is at run time (``NewType("VipOrder", Order)`` is ``Order``)."""
    hint = unannotated(hint)
    for _ in range(20):  # a NewType of a NewType...
        if not hasattr(hint, "__supertype__"):
            break
        hint = unannotated(hint.__supertype__)
    return hint


def body_model(hint: Any) -> Any:
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


def model_name(model: Any) -> str:
    """A model's name in reasons: a parametrized generic's is its class's."""
    named = typing.get_origin(model) or model
    return str(getattr(named, "__name__", repr(named)))


def _models_within(hint: Any, depth: int = 0) -> list[Any]:
    """The model types (those :func:`body_model` names, a parametrized generic
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


def check_body_type(name: str, parameter: str, annotation: Any, body_type: Any) -> None:
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
    found = body_model(body_type)
    if found is not None:
        origin = typing.get_origin(found)
        if _is_struct(origin or found):
            _check_struct(name, parameter, annotation, found, generic=origin is not None)
            return
        held = _models_within(found) if dataclasses.is_dataclass(origin) else []
        held = [m for m in held if not dataclasses.is_dataclass(m) and not _is_struct(m)]
        if held:
            model = model_name(held[0])
            raise InvalidOption(
                f"handler {name} annotates its body parameter {parameter!r} with "
                f"{annotation!r}, a generic dataclass whose type arguments hold the model "
                f"{model}: brokerkit builds a dataclass itself, never with pydantic, so "
                f"{model} would reach the handler unvalidated, as decoded data (a dict). "
                f"Make {model} a dataclass or a msgspec Struct, or annotate the body with a "
                "pydantic model"
            )
        return
    models = _models_within(_supertype(body_type))
    if models:
        model = model_name(models[0])
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


def _check_struct(
    name: str, parameter: str, annotation: Any, struct: Any, *, generic: bool
) -> None:
    """Refuse a msgspec Struct body, generic or not (``Box[Line]``), that msgspec
    cannot build from decoded data (see :func:`struct_fault`).

    :raises InvalidOption: naming the annotation, the field and the type.
    """
    fault = struct_fault(struct)
    if fault is None:
        return
    what_struct = "a generic msgspec Struct" if generic else "a msgspec Struct"
    advice = (
        fault.advice
        if fault.unreadable
        else f"{fault.advice}, or annotate the body with a pydantic model"
    )
    raise InvalidOption(
        f"handler {name} annotates its body parameter {parameter!r} with {annotation!r}, "
        f"{what_struct} {fault.text}. {advice}"
    )


@dataclasses.dataclass(frozen=True)
class StructFault:
    """Why msgspec cannot build a Struct from decoded data: ``text`` follows "a
    msgspec Struct" in a sentence ("whose field 'line' of Order holds Line (a pydantic
    model), which msgspec cannot build..."), ``advice`` is the fix, without a stop."""

    text: str
    advice: str
    unreadable: bool = False


def struct_fault(struct: Any) -> StructFault | None:
    """What makes the msgspec Struct ``struct`` (generic or not: ``Box[Line]``)
    unbuildable from decoded data, None if nothing does: one of its fields, at any
    depth, holds a type msgspec cannot build (what ``msgspec.inspect`` reads as a
    custom type: a pydantic model, a plain class), which needs a ``dec_hook`` the
    worker does not pass: ``Order`` with a field ``line: Line``, or
    ``Box[list[Line]]``, ``Line`` a pydantic model (a generic Struct's fields are read
    with its type arguments in place); or msgspec cannot read it at all (an annotation
    that does not resolve, a type it does not support). msgspec builds what it knows
    (Structs, dataclasses, attrs classes, builtins, datetimes, enums...). Every message
    would be dead-lettered. Used for a Struct body and for a Struct a dataclass body
    holds (:class:`~brokerkit.worker._dataclass_body.Builders`)."""
    inspect_types = importlib.import_module("msgspec.inspect")
    try:
        info = inspect_types.type_info(struct)
    except Exception as exc:  # a field's annotation does not resolve, or is unsupported
        return StructFault(
            f"msgspec cannot read ({type(exc).__name__}: {one_line(exc)}): no body could "
            "be validated into it",
            "Annotate its fields with types defined at module level that msgspec supports",
            unreadable=True,
        )
    custom = _custom_type(info, inspect_types.CustomType)
    if custom is None:
        return None
    what, kind = _unbuildable(custom[0])
    return StructFault(
        f"whose {custom[1]} holds {what} ({kind}), which msgspec cannot build from a "
        f"message: every message would be dead-lettered (Expected `{what}`, got `dict`)",
        f"Make {what} a msgspec Struct or a dataclass",
    )


def _unbuildable(custom: Any) -> tuple[str, str]:
    """The name of a class msgspec cannot build, and what it is."""
    pydantic = sys.modules.get("pydantic")
    kind = (
        "a pydantic model"
        if pydantic is not None and issubclass(custom, pydantic.BaseModel)
        else "a class msgspec does not know"
    )
    return model_name(custom), kind


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
        owner = model_name(getattr(node, "cls", None))
        for field in reversed(getattr(node, "fields", None) or ()):  # the first on top
            todo.append((field.type, f"field {field.name!r} of {owner}"))
    return None


def _is_model(body_type: Any) -> bool:
    """Whether ``body_type`` is a type a body is validated into: a pydantic model, a
    msgspec Struct or a dataclass."""
    if not isinstance(body_type, type) or typing.get_origin(body_type) is not None:
        return False  # (list[int] passes for a type on Python 3.10)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(body_type, pydantic.BaseModel):
        return True
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(body_type, msgspec.Struct):
        return True
    return dataclasses.is_dataclass(body_type)
