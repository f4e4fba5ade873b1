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


def assign_group_splits(
    item_groups: Mapping[str, str], group_labels: Mapping[str, str], seed: int, test_fraction: float,
    dev_fraction: float,
) -> dict[str, Split]:
    """Assign whole groups (e.g. the paragraphs of one page) to one split each, stratified by label.

    Per label, the groups are taken in seeded order and each goes to the split that still misses
    the most items of its quota (groups differ in size, so quotas are met in items, not groups).
    Every item follows its group, so texts that share a context never straddle two splits.
    """
    sizes: dict[str, int] = defaultdict(int)
    for group in item_groups.values():
        sizes[group] += 1
    by_label: dict[str, list[str]] = defaultdict(list)
    for group in sizes:
        by_label[group_labels[group]].append(group)
    group_split: dict[str, Split] = {}
    for groups in by_label.values():
        groups.sort(key=lambda group: _rank_key(seed, group))
        total = sum(sizes[group] for group in groups)
        n_test = round(total * test_fraction)
        n_dev = round((total - n_test) * dev_fraction)
        missing: dict[Split, int] = {"test": n_test, "dev": n_dev, "train": total - n_test - n_dev}
        for group in groups:
            split = max(SPLITS[::-1], key=lambda s: missing[s])  # ties: test, then dev
            group_split[group] = split
            missing[split] -= sizes[group]
    return {item: group_split[group] for item, group in item_groups.items()}


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
