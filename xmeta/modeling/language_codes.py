"""Adapter names: a language code names an adapter and its folder; ``meta`` names θ's.

Kept apart from the model classes so that adaptation, saving and export check names without importing them.
"""

from __future__ import annotations

import re

from ..errors import ArgumentError

META_ADAPTER = "meta"
_LANG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def check_language_code(lang: str) -> str:
    """Language codes name adapters and folders, so they must be short and plain."""
    if not _LANG_RE.match(lang or "") or lang == META_ADAPTER:
        raise ArgumentError(f"language code {lang!r} is not usable (letters, digits, '-', '_'; not 'meta')")
    return lang
