"""The names the application's pydantic models declare: what a step of a validation
error's path may show. A step that is not one (a dict's key, a union member pydantic
named itself) came from the body, or may have: it is shown as ``*``."""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

__all__ = ["Declared"]

#: The names each model class declares, read once (a class's schema does not change
#: once it is built); a class that goes away takes its names with it.
_NAMES: weakref.WeakKeyDictionary[type, frozenset[str]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class Declared:
    """The names the pydantic models loaded now declare (``name in Declared()``):
    anywhere in the core schema of a pydantic 2 model (a field's name or alias, a
    nested dataclass's or TypedDict's field, a tag of a tagged union, a union member's
    label such as ``int``, a class's name), and a pydantic 1 model's fields' names and
    aliases. pydantic is not imported here: with no model loaded, none is declared.
    Never raises: a model whose schema cannot be read declares nothing."""

    def __init__(self) -> None:
        try:
            self._names = _all_names()
        except Exception:
            self._names = []

    def __contains__(self, step: object) -> bool:
        return isinstance(step, str) and any(step in names for names in self._names)


def _all_names() -> list[frozenset[str]]:
    found: list[frozenset[str]] = []
    for module, read in (("pydantic.main", _schema_names), ("pydantic.v1.main", _v1_names)):
        base = getattr(sys.modules.get(module), "BaseModel", None)
        if isinstance(base, type):
            found += [_names_of(model, read) for model in _subclasses(base)]
    return found


def _subclasses(base: type) -> list[type]:
    seen: set[type] = set()
    todo = [base]
    while todo:
        subs: list[type] = type.__subclasses__(todo.pop())
        for sub in subs:
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return list(seen)


def _names_of(model: type, read: Any) -> frozenset[str]:
    with _LOCK:
        names = _NAMES.get(model)
    if names is None:
        try:
            names = read(model)
        except Exception:  # a model whose schema cannot be read: none of its names
            return frozenset()
        if names is not None:
            with _LOCK:
                _NAMES[model] = names
    return names or frozenset()


def _schema_names(model: type) -> frozenset[str] | None:
    """Every str, and every class's name, in the core schema of a pydantic 2 model;
    None for a model not built yet (its schema is a stand-in until it is: read again
    next time)."""
    schema = vars(model).get("__pydantic_core_schema__")
    if not isinstance(schema, dict):
        return None
    names: set[str] = {model.__name__}
    seen: set[int] = set()
    todo: list[Any] = [schema]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            names.update(key for key in node if isinstance(key, str))
            todo += node.values()
        elif isinstance(node, (list, tuple)):
            todo += node
        elif isinstance(node, str):
            names.add(node)
        elif isinstance(node, type):
            names.add(node.__name__)
    return frozenset(names)


def _v1_names(model: type) -> frozenset[str]:
    """A pydantic 1 model's name, and its fields' names and aliases."""
    names = {model.__name__}
    for name, field in (vars(model).get("__fields__") or {}).items():
        names.add(name)
        alias = getattr(field, "alias", None)
        if isinstance(alias, str):
            names.add(alias)
    return frozenset(names)
