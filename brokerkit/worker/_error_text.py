"""The text of an error, for logs and dead-letter reasons: never failing, on one line."""

from __future__ import annotations

__all__ = ["error_text", "one_line"]


def error_text(exc: BaseException) -> str:
    """``str(exc)``, or ``<TypeName: str() failed>`` when that raises: the text of an
    error that never fails (an error's own ``__str__`` may be broken)."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def one_line(exc: BaseException) -> str:
    """:func:`error_text` on one line, 500 characters at most."""
    text = " ".join(error_text(exc).split())
    return text if len(text) <= 500 else text[:500] + "..."
