"""Everything an exception shows a user, for the secret scans."""

from __future__ import annotations

import traceback

__all__ = ["chain", "exception_text"]


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception behind it (``__cause__``, else ``__context__``), once each."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def exception_text(exc: BaseException) -> str:
    """All an exception shows: str, repr, args, notes, attributes, the chain, the traceback."""
    parts: list[str] = []
    for e in chain(exc):
        parts += [str(e), repr(e), *map(repr, e.args), *getattr(e, "__notes__", [])]
        parts += [f"{k}={v!r}" for k, v in vars(e).items()] if hasattr(e, "__dict__") else []
    parts.append("".join(traceback.format_exception(exc)))
    return "\n".join(parts)
