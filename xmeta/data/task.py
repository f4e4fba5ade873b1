"""One language = one task: its texts and labels under a label map shared by every
language, so one classification head serves all of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset

from xmeta.errors import ArgumentError, DataError


@dataclass(frozen=True)
class LabelMap:
    """Label names <-> ids, in a fixed order (the card's, or sorted for plain data)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise DataError(f"duplicate label names in {list(self.names)}")

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelMap:
        return cls(tuple(sorted(set(labels))))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def encode(self, labels: Iterable[str], where: str) -> list[int]:
        """Ids of ``labels``; an unseen label names itself and ``where`` (file or language)."""
        ids = self.label2id
        out = []
        for label in labels:
            if label not in ids:
                raise DataError(
                    f"{where}: unseen label '{label}' (known labels: {', '.join(self.names)})"
                )
            out.append(ids[label])
        return out


@dataclass
class LanguageTask:
    """The labelled texts of one language; ``labels`` are ids of the shared ``label_map``.
    A text is a string or, for sentence-pair tasks, a ``(text, text_pair)`` tuple."""

    lang: str
    texts: list[str] | list[tuple[str, str]]
    labels: list[int]
    label_map: LabelMap
    item_ids: list[str] | None = None
    _by_label: dict[int, list[int]] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels) or (self.item_ids is not None and len(self.item_ids) != len(self.texts)):
            raise DataError(f"language {self.lang}: texts, labels and item ids differ in length")
        bad = next((i for i in self.labels if not 0 <= i < len(self.label_map)), None)
        if bad is not None:
            raise DataError(f"language {self.lang}: label id {bad} outside 0..{len(self.label_map) - 1}")

    def __len__(self) -> int:
        return len(self.texts)

    def by_label(self) -> dict[int, list[int]]:
        """Row indices per label id (labels the language lacks are absent), sorted by id."""
        if self._by_label is None:
            groups: dict[int, list[int]] = defaultdict(list)
            for index, label in enumerate(self.labels):
                groups[label].append(index)
            self._by_label = dict(sorted(groups.items()))
        return self._by_label

    shot_unit = "examples per class"  # what K counts in a K-shot set of this task kind

    @property
    def max_shots(self) -> int:
        """The largest K a K-shot set can have here: the size of the smallest class."""
        return min(len(rows) for rows in self.by_label().values())

    def shots(self, k: int, seed: int) -> list[int]:
        """Indices of a K-shot set (K per class, stratified), the same for the same (k, seed)."""
        return sample_k_shot(self, k, seed)

    def examples(self, indices: Sequence[int]) -> list[tuple[str, ...]]:
        """Rows as ``model.adapt`` reads them: (text, label) or (text, text_pair, label), label by name."""
        rows = []
        for i in indices:
            text = self.texts[i]
            rows.append(((text,) if isinstance(text, str) else tuple(text)) + (self.label_map.names[self.labels[i]],))
        return rows

    def subset(self, indices: Sequence[int]) -> LanguageTask:
        """The rows at ``indices`` (e.g. a K-shot training set)."""
        return LanguageTask(
            lang=self.lang,
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            label_map=self.label_map,
            item_ids=None if self.item_ids is None else [self.item_ids[i] for i in indices],
        )


def tasks_from_dataset(dataset: Dataset, label_map: LabelMap | None = None, origin: str = "dataset") -> dict[str, LanguageTask]:
    """Group a Dataset (text[, text_pair], label, lang[, item_id]) into one LanguageTask per language.

    Without ``label_map`` the labels found define it (sorted); pass the model's map when
    reading data for an existing model so ids line up with its head.
    """
    for column in ("text", "label", "lang"):
        if column not in dataset.column_names:
            raise DataError(f"{origin}: missing column '{column}'; columns found: {', '.join(dataset.column_names)}")
    columns = dataset.to_dict()  # one Arrow read: per-row Column access is slow
    label_map = label_map or LabelMap.from_labels(columns["label"])
    rows: dict[str, list[int]] = defaultdict(list)
    for index, lang in enumerate(columns["lang"]):
        rows[lang].append(index)
    texts, labels, items = columns["text"], columns["label"], columns.get("item_id")
    if "text_pair" in columns:
        texts = list(zip(texts, columns["text_pair"]))
    return {
        lang: LanguageTask(
            lang=lang,
            texts=[texts[i] for i in indices],
            labels=label_map.encode((labels[i] for i in indices), f"{origin}, language {lang}"),
            label_map=label_map,
            item_ids=[items[i] for i in indices] if items is not None else None,
        )
        for lang, indices in rows.items()
    }


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer, got {value!r}")


def sample_k_shot(task: LanguageTask, k: int, seed: int) -> list[int]:
    """Indices of K examples per label of ``task`` (a few-shot training set), sorted.

    The same (task, k, seed) always gives the same set, so evaluations over seeds
    are comparable between models.
    """
    _positive("k", k)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label, rows in task.by_label().items():
        if len(rows) < k:
            raise DataError(
                f"language {task.lang}: label '{task.label_map.names[label]}' has {len(rows)} examples, "
                f"fewer than k={k}"
            )
        chosen += rng.choice(rows, size=k, replace=False).tolist()
    return sorted(chosen)
