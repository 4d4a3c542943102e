"""Sphinx configuration: furo theme, Markdown through MyST, API from docstrings."""

from __future__ import annotations

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
suppress_warnings = ["myst.xref_missing", "myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False


html_theme = "furo"
html_title = "brokerkit"
html_show_sphinx = True


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
    app.connect("autodoc-process-docstring", _keep_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", _reparse_attribute_docstring, priority=600)
