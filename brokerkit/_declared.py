"""The names the application's pydantic models declare: what a step of a validation
error's path may show. A step that is not one (a dict's key, a union member pydantic
named itself) came from the body, or may have: it is shown as ``*``.

Each model is read once (a class's schema does not change once it is built), and the
names of all of them are kept as one set: an error's text looks a step up in it. For a
step the set does not hold, the models loaded are looked at again (reading only those
not read yet), at most once per text, and only if something may have changed since the
last look: a module was imported, a model was made right under ``BaseModel``, one read
went away, or the error is of a model (its title) not seen since. So a body's dict keys
cost no look at all once its model's first error has been told: an invalid body costs
no more with many models loaded than with one.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable

__all__ = ["Declared"]

#: The names each model class declares, read once; a class that goes away takes its
#: names with it (at the next look).
_NAMES: weakref.WeakKeyDictionary[type, frozenset[str]] = weakref.WeakKeyDictionary()
#: The names of all the models in :data:`_NAMES` at the last look, and how many there
#: were then (replaced whole: read without the lock).
_ALL: frozenset[str] = frozenset()
_ALL_OF = 0
#: One look at a time.
_LOOKING = threading.Lock()
#: What the models loaded looked like at the last look (:func:`_state`), and the titles
#: of the errors whose steps were looked for since.
_LOOKED_AT: tuple[int, ...] = ()
_TITLES: set[str] = set()

_Reader = Callable[[type], "frozenset[str] | None"]


class Declared:
    """The names the pydantic models loaded declare (``name in Declared()``): anywhere
    in the core schema of a pydantic 2 model (a field's name or alias, a nested
    dataclass's or TypedDict's field, a tag of a tagged union, a union member's label
    such as ``int``, a class's name), and a pydantic 1 model's fields' names and
    aliases. pydantic is not imported here: with no model loaded, none is declared.

    Made once per error text, for an error titled ``title`` (the name of what was
    validated). A step among the names of the models read so far costs a set lookup;
    the first that is not makes this look at the models loaded now (see the module's
    text), and later ones use what that look found. A model made after the last look
    and seen by none (not in a new module, not right under ``BaseModel``, and named as
    one whose error was told since) shows its own names as ``*`` until the next look:
    never more than is declared. Never raises: a model whose schema cannot be read
    declares nothing."""

    def __init__(self, title: str | None = None) -> None:
        self._names = _ALL if len(_NAMES) == _ALL_OF else _union()
        self._title = title
        self._looked = False

    def __contains__(self, step: object) -> bool:
        if not isinstance(step, str):
            return False
        if step in self._names:
            return True
        if self._looked:
            return False
        self._looked = True
        try:
            if self._title is not None and self._title in _TITLES and _state() == _LOOKED_AT:
                return False  # nothing new since the look for an error of this title
            self._names = _look(self._title)
        except Exception:
            return False
        return step in self._names


def _bases() -> list[tuple[type, _Reader]]:
    """pydantic's ``BaseModel`` classes loaded (2's and 1's), each with its reader."""
    found: list[tuple[type, _Reader]] = []
    for module, read in (("pydantic.main", _schema_names), ("pydantic.v1.main", _v1_names)):
        base = getattr(sys.modules.get(module), "BaseModel", None)
        if isinstance(base, type):
            found.append((base, read))
    return found


def _state() -> tuple[int, ...]:
    """What changes when a model may have been made or gone away: the modules loaded,
    the models right under each ``BaseModel``, the models read."""
    return (
        len(sys.modules),
        len(_NAMES),
        *(len(type.__subclasses__(base)) for base, _ in _bases()),
    )


def _union() -> frozenset[str]:
    """The names of the models read that are still loaded: one that went away since
    the union was made takes its names with it (a body's dict key named as it was
    would show)."""
    with _LOOKING:
        if len(_NAMES) != _ALL_OF:
            _unite()
        return _ALL


def _unite() -> None:
    """Make the union of the names of the models read (holding :data:`_LOOKING`)."""
    global _ALL, _ALL_OF
    found: set[str] = set()
    for names in list(_NAMES.values()):
        found |= names
    _ALL, _ALL_OF = frozenset(found), len(_NAMES)


def _look(title: str | None) -> frozenset[str]:
    """The names of every model loaded now; reads those not read yet."""
    global _LOOKED_AT
    with _LOOKING:
        fresh = False
        for base, read in _bases():
            for model in _subclasses(base):
                if model not in _NAMES:
                    fresh = _read(model, read) or fresh
        if fresh or len(_NAMES) != _ALL_OF:  # read one, or one went away
            _unite()
        state = _state()
        if state != _LOOKED_AT:
            _LOOKED_AT = state
            _TITLES.clear()
        if title is not None:
            _TITLES.add(title)
        return _ALL


def _read(model: type, read: _Reader) -> bool:
    """Read ``model``'s names into :data:`_NAMES`; whether it could be (a model not
    built yet cannot: read again at the next look)."""
    try:
        names = read(model)
    except Exception:  # a model whose schema cannot be read: none of its names
        names = frozenset()
    if names is None:
        return False
    _NAMES[model] = names
    return True


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


def _schema_names(model: type) -> frozenset[str] | None:
    """Every str, and every class's name, in the core schema of a pydantic 2 model;
    None for a model not built yet (its schema is a stand-in until it is: read again
    next time)."""
    schema = vars(model).get("__pydantic_core_schema__")
    if not isinstance(schema, dict):
        return None
    names: set[str] = {model.__name__}
    seen: set[int] = set()
    todo: list[object] = [schema]
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
