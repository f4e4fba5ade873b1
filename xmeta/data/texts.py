"""One check of user texts and labels, shared by the file readers and the Python API, so a
``None`` or empty text is refused the same way whether it came from a file line or a list."""

from __future__ import annotations

from collections.abc import Sequence

from xmeta.errors import DataError


def checked_text(value: object, where: str, column: str = "") -> str:
    """``value`` if it is a non-blank string; else a `DataError` naming ``where`` (file:line or example i)."""
    if isinstance(value, str) and value.strip():
        return value
    in_column = f" in column '{column}'" if column else ""
    if value is None or isinstance(value, str):
        raise DataError(f"{where}: empty text{in_column}")
    raise DataError(f"{where}: text{in_column} must be a string, got {type(value).__name__} {str(value)[:40]!r}")


def checked_label(value: object, where: str, column: str = "") -> str:
    """A label as its name; ``None`` or blank is refused (it would otherwise become the label "None")."""
    if value is None or str(value).strip() == "":
        raise DataError(f"{where}: empty label" + (f" in column '{column}'" if column else ""))
    return str(value)


def text_batch(texts: str | Sequence, where: str = "predict") -> tuple[list, bool]:
    """``texts`` as a checked list, and whether a single string was given (it is one text, not its characters).

    A text is a string or a ``(text, text_pair)`` pair."""
    single = isinstance(texts, str)
    rows = [texts] if single else list(texts)
    for i, text in enumerate(rows):
        if isinstance(text, (tuple, list)):
            if len(text) != 2:
                raise DataError(f"{where}: example {i}: a pair is (text, text_pair), got {len(text)} parts")
            for part in text:
                checked_text(part, f"{where}: example {i}")
        else:
            checked_text(text, f"{where}: example {i}")
    return rows, single
