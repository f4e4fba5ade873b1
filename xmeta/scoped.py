"""Attributes set for the length of a block: the one pattern behind a model's temporary states (the language
an episode masks, the centre a prototype head reads, the representation an adapter generator starts from)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def attributes_set(obj: Any, **values: Any) -> Iterator[None]:
    """``obj``'s attributes set to ``values`` inside the block, and what they were restored after it (on an
    error too), so that blocks nest."""
    previous = {name: getattr(obj, name) for name in values}
    for name, value in values.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(obj, name, value)
