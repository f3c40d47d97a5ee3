"""How the product shows an error in one line (logs, run failures, the command line)."""

from __future__ import annotations


def first_line(error: BaseException | str, default: str | None = None) -> str:
    """The first non-blank line of an error's message; when it has none, `default`, else the error's class
    name (an exception) or an empty string."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines:
        return lines[0]
    if default is not None:
        return default
    return type(error).__name__ if isinstance(error, BaseException) else ""
