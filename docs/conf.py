"""Sphinx configuration: furo theme, Markdown through MyST, API from docstrings."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Any

from sphinx.ext.napoleon.docstring import GoogleDocstring, NumpyDocstring

import brokerkit

project = "brokerkit"
author = "The brokerkit developers"
release = version = brokerkit.__version__
copyright = "2026, The brokerkit developers (MIT License)"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
# A Markdown link to a page or heading that does not exist fails the build too.
suppress_warnings = ["myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Every cross-reference must resolve (the CI builds with -W): a role whose target the
# reference does not document would render as plain text, silently. There is no
# intersphinx (CI has no guaranteed network), so the standard library's, pluggy's and
# typer's names in signatures cannot link anywhere: they are shown as code, unlinked.
nitpicky = True
nitpick_ignore_regex = [
    ("py:.*", r"(collections\.abc|datetime|enum|typing|pluggy|typer)\..+"),
]


html_theme = "furo"
html_title = "brokerkit"
html_show_sphinx = True


# A name resolves to the object it names where it is written (a docstring's own module
# and class, then from the top), and links to the entry that documents that object,
# whatever that entry's name: brokerkit.InvalidURL, which users import, links to
# brokerkit.exceptions.InvalidURL, and a docstring's bare `BrokerClosed` to it too; an
# instance variable to the class entry whose `:ivar:` documents it. A name that
# resolves to nothing still fails the build (a typo, a removed name), and so does a
# public object the reference leaves out; a private one (a `_name`, a private module's
# global) is shown as code without a link, as the reference leaves it out by design.
_DOCSTRING_OF = re.compile(r"docstring of ([\w.]+)")
_LINKABLE = ("class", "exception", "function", "method", "property", "attribute", "data")


def _lookup(dotted: str) -> list[Any] | None:
    """The objects along `dotted`, from its longest importable module, or None (only
    brokerkit's modules are imported: a name is never run as some other module)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if parts[0] != "brokerkit" and module not in sys.modules:
            continue
        try:
            obj: Any = importlib.import_module(module)
        except ImportError:
            continue
        path = [obj]
        for part in parts[cut:]:
            try:
                obj = inspect.getattr_static(obj, part)
            except AttributeError:
                return None
            path.append(obj)
        return path
    return None


def _scopes(node: Any) -> list[str]:
    """Where a reference's name is looked up: its docstring's class and module first."""
    scopes = []
    found = _DOCSTRING_OF.search(str(node.source or ""))
    if found:
        where = found[1].split(".")
        for cut in range(len(where), 0, -1):
            path = _lookup(".".join(where[:cut]))
            if path and (inspect.isclass(path[-1]) or inspect.ismodule(path[-1])):
                scopes.append(".".join(where[:cut]))
    if node.get("py:module"):
        if node.get("py:class"):
            scopes.append(f"{node['py:module']}.{node['py:class']}")
        scopes.append(node["py:module"])
    return [*scopes, ""]


_DOCUMENTED: dict[int, tuple[Any, str]] = {}


def _documented(env: Any) -> dict[int, tuple[Any, str]]:
    """The documented objects by id, with the name of the entry that documents each."""
    if not _DOCUMENTED:
        for name, entry in sorted(env.domains["py"].objects.items()):
            if entry.objtype in _LINKABLE and not entry.aliased:
                path = _lookup(name)
                if path and not isinstance(path[-1], (bool, int, float, str, type(None))):
                    _DOCUMENTED.setdefault(id(path[-1]), (path[-1], name))
    return _DOCUMENTED


def _ivar(cls: Any, name: str) -> bool:
    return bool(re.search(rf":ivar (?:[\w.\[\], |]+ )?{re.escape(name)}:", cls.__doc__ or ""))


def _resolve(env: Any, node: Any) -> tuple[str | None, str | None]:
    """The documented name of the object a target names, and the scope it was found in
    (None: it names nothing)."""
    target = node["reftarget"].lstrip("~.")
    documented = _documented(env)
    objects = env.domains["py"].objects
    parts = target.split(".")
    for scope in _scopes(node):
        full = f"{scope}.{target}" if scope else target
        path = _lookup(full) or []
        owner = _lookup(full.rpartition(".")[0]) if "." in full else None
        owner_class = owner[-1] if owner and inspect.isclass(owner[-1]) else None
        ivar = owner_class is not None and _ivar(owner_class, parts[-1])
        if not path and not ivar:
            continue
        # The deepest object on the path that an entry documents, and the names after it.
        for depth in range(len(path) - 1, -1, -1):
            known = documented.get(id(path[depth]))
            if known is None or known[0] is not path[depth]:
                continue
            after = len(path) - 1 - depth
            name = ".".join([known[1], *(parts[-after:] if after else [])])
            if name in objects:
                return name, scope
        if ivar:
            known = documented.get(id(owner_class))
            return (known[1] if known else None), scope
        return None, scope
    return None, None


def _missing_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    name, _ = _resolve(env, node)
    if name is None:
        return None
    domain = env.domains["py"]
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
    ) or domain.resolve_xref(env, node["refdoc"], app.builder, "obj", name, node, contnode)


def _public(env: Any, obj: Any, name: str) -> bool:
    """Whether a public module the reference documents from exports `obj` as `name`."""
    for module_name in {entry.rpartition(".")[0] for entry in env.domains["py"].objects}:
        module = sys.modules.get(module_name)
        if module is None or any(part.startswith("_") for part in module_name.split(".")):
            continue
        exported = getattr(module, "__all__", None)
        if getattr(module, name, None) is obj and (exported is None or name in exported):
            return True
    return False


def _warn_missing_reference(app: Any, domain: Any, node: Any) -> bool | None:
    """Leave a private target unlinked without a warning; warn of any other."""
    if domain is None or domain.name != "py":
        return None
    name, scope = _resolve(app.env, node)
    if name is not None or scope is None:
        return None
    target = node["reftarget"].lstrip("~.")
    if any(part.startswith("_") and not part.endswith("__") for part in target.split(".")):
        return True
    where = _lookup(scope) if scope else None
    if where is not None and inspect.isclass(where[-1]):
        root, root_name = where[-1], where[-1].__name__
    else:
        root_name = target.split(".")[0]
        path = _lookup(f"{scope}.{root_name}" if scope else root_name)
        root = path[-1] if path else None
    if root is not None and not inspect.ismodule(root) and not _public(app.env, root, root_name):
        return True
    return None


# Napoleon reads an attribute's docstring up to its first colon as the attribute's type:
# "The largest payload, in bytes, the backend can store in one message (``None``: no
# limit of its own)" became a type of three unknown classes, and the page showed the
# rest of the sentence alone. Types come from annotations here, so an attribute's
# docstring is parsed as any other's (its sections, such as Raises:, still are).
_ATTRIBUTE_DOCSTRINGS: dict[str, list[str]] = {}


def _keep_attribute_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if what in ("attribute", "property", "data"):
        _ATTRIBUTE_DOCSTRINGS[name] = list(lines)


def _reparse_attribute_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if what in ("attribute", "property", "data") and name in _ATTRIBUTE_DOCSTRINGS:
        result = _ATTRIBUTE_DOCSTRINGS.pop(name)
        if app.config.napoleon_numpy_docstring:
            result = NumpyDocstring(result, app.config, app, "", name, obj, options).lines()
        if app.config.napoleon_google_docstring:
            result = GoogleDocstring(result, app.config, app, "", name, obj, options).lines()
        lines[:] = result


def setup(app: Any) -> None:
    app.connect("env-updated", lambda app, env: _DOCUMENTED.clear())
    app.connect("autodoc-process-docstring", _keep_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", _reparse_attribute_docstring, priority=600)
    app.connect("missing-reference", _missing_reference)
    app.connect("warn-missing-reference", _warn_missing_reference)
