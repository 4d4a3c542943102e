"""Sphinx configuration: furo theme, Markdown through MyST, API from docstrings."""

from __future__ import annotations

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
