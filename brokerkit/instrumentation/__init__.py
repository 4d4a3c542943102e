"""Optional instrumentation built on brokerkit's message hooks.

- :mod:`brokerkit.instrumentation.opentelemetry`: traces (extra ``opentelemetry``).
- :mod:`brokerkit.instrumentation.prometheus`: metrics (extra ``prometheus``).
"""

from __future__ import annotations


def _missing_extra(error: ImportError, module: str, extra: str) -> ImportError:
    """The error for importing ``module`` without its ``extra``: ``error``'s own kind
    and missing module's ``name`` (so ``except ImportError`` and
    ``pytest.importorskip`` still see it for what it is), its text naming the
    ``pip install`` that brings what is missing."""
    return type(error)(
        f"{module} needs the {extra} extra ({error}); install it with: "
        f'pip install "pybrokerkit[{extra}]"',
        name=error.name,
        path=error.path,
    )
