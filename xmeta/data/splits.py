"""Train/dev/test by item, not by row: in a parallel task the same item (an emoji, a
sentence id) appears in every language, so a row split would leak test items into
training through another language.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Literal

from datasets import Dataset

from xmeta.errors import DataError

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")


def _rank_key(seed: int, item: str) -> str:
    """A per-item random key that is stable across processes (unlike ``hash``)."""
    return hashlib.sha256(f"{seed}\x00{item}".encode()).hexdigest()


def assign_item_splits(
    item_labels: Mapping[str, str], seed: int, test_fraction: float, dev_fraction: float
) -> dict[str, Split]:
    """Assign every item to one split, stratified by label with exact per-label quotas.

    ``dev_fraction`` is a share of the train items (dev is carved out of train). The
    result depends only on the items, their labels and the seed, never on dict order.
    """
    by_label: dict[str, list[str]] = defaultdict(list)
    for item, label in item_labels.items():
        by_label[label].append(item)
    assignment: dict[str, Split] = {}
    for items in by_label.values():
        items.sort(key=lambda item: _rank_key(seed, item))
        n_test = round(len(items) * test_fraction)
        n_dev = round((len(items) - n_test) * dev_fraction)
        for rank, item in enumerate(items):
            assignment[item] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
    return assignment


def select_split(dataset: Dataset, assignment: Mapping[str, Split], split: Split, origin: str) -> Dataset:
    """The rows of ``dataset`` (with an ``item_id`` column) whose item is in ``split``."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' (expected one of {', '.join(SPLITS)})")
    if "item_id" not in dataset.column_names:
        raise DataError(f"{origin}: splitting by item needs an 'item_id' column; columns found: "
                        f"{', '.join(dataset.column_names)}")
    keep = []
    columns = dataset.select_columns(["item_id", "lang"]).to_dict()
    for row, (item, lang) in enumerate(zip(columns["item_id"], columns["lang"])):
        if item not in assignment:
            raise DataError(f"{origin}: item {item!r} (language {lang}, row {row}) is not in the split universe")
        if assignment[item] == split:
            keep.append(row)
    return dataset.select(keep)
