"""Episodes for meta-learning: one language per episode, N-way K-shot stratified
support and a disjoint query set from the same language.

Labels keep their global ids (the head has every class), so an episode is not
remapped to 0..N-1. All randomness comes from one numpy Generator whose state is
saved in checkpoints, so a resumed run draws exactly the episodes it would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xmeta.data.task import LanguageTask, _positive
from xmeta.errors import ArgumentError, DataError, warn

LanguageSampling = Literal["uniform", "size"]


@dataclass
class Episode:
    """Support and query sets of one language; labels are global label ids."""

    lang: str
    support_texts: list[str]
    support_labels: list[int]
    query_texts: list[str]
    query_labels: list[int]

    @classmethod
    def from_rows(cls, lang: str, task, support: list[int], query: list[int]) -> Episode:
        """The episode of ``task``'s rows ``support`` and ``query`` (any task with texts and labels)."""
        return cls(
            lang=lang,
            support_texts=[task.texts[i] for i in support],
            support_labels=[task.labels[i] for i in support],
            query_texts=[task.texts[i] for i in query],
            query_labels=[task.labels[i] for i in query],
        )


class EpisodeSampler:
    """Draw N-way K-shot episodes over several languages, reproducibly from ``seed``.

    ``n_way=None`` (or "all") uses every label of the language with enough examples.
    ``language_sampling="size"`` picks a language with probability proportional to
    size**(1/temperature): temperature 1 follows the data, larger flattens towards uniform.
    ``min_k_shot`` (below ``k_shot``) varies the support: each episode draws its shots per class
    uniformly from ``min_k_shot..k_shot``, so θ also learns to start from one or two examples per
    class (variable-shot episodes, as in Meta-Dataset); the default keeps every episode at ``k_shot``.
    """

    def __init__(
        self,
        tasks: dict[str, LanguageTask],
        n_way: int | Literal["all"] | None,
        k_shot: int,
        k_query: int,
        seed: int,
        language_sampling: LanguageSampling = "uniform",
        temperature: float = 1.0,
        min_k_shot: int = 0,
    ) -> None:
        if not tasks:
            raise DataError("no languages to sample episodes from")
        _positive("k_shot", k_shot)
        _positive("k_query", k_query)
        self.n_way = None if n_way in (None, "all") else n_way
        if self.n_way is not None:
            _positive("n_way", self.n_way)
        if language_sampling not in ("uniform", "size"):
            raise ArgumentError(f"language_sampling must be 'uniform' or 'size', got {language_sampling!r}")
        if not temperature > 0:
            raise ArgumentError(f"temperature must be > 0, got {temperature}")
        self.tasks = tasks
        if not 0 <= min_k_shot <= k_shot:
            raise ArgumentError(f"min_k_shot must be between 0 and k_shot={k_shot} (got {min_k_shot})")
        self.k_shot, self.k_query, self.min_k_shot = k_shot, k_query, min_k_shot
        self.langs = list(tasks)
        self.eligible = {lang: self._eligible(task) for lang, task in tasks.items()}
        sizes = np.array([len(tasks[lang]) for lang in self.langs], dtype=float)
        weights = np.ones_like(sizes) if language_sampling == "uniform" else sizes ** (1.0 / temperature)
        self.language_probs = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def _eligible(self, task: LanguageTask) -> list[int]:
        """Labels with enough rows for disjoint support and query; too few -> DataError."""
        need = self.k_shot + self.k_query
        eligible = [label for label, rows in task.by_label().items() if len(rows) >= need]
        if not eligible or self.n_way is not None and len(eligible) < self.n_way:
            counts = ", ".join(f"{task.label_map.names[label]}={len(rows)}" for label, rows in task.by_label().items())
            raise DataError(
                f"language {task.lang}: only {len(eligible)} label(s) have >= {need} examples (k_shot + k_query), "
                f"need {self.n_way or 1}; counts: {counts}"
            )
        return eligible

    def sample(self) -> Episode:
        """One episode from a language drawn by ``language_sampling``."""
        return self._episode(self.langs[self.rng.choice(len(self.langs), p=self.language_probs)])

    def sample_meta_batch(self, n_languages: int) -> list[Episode]:
        """Episodes of ``n_languages`` distinct languages (drawn without replacement)."""
        _positive("n_languages", n_languages)
        if n_languages > len(self.langs):
            raise ArgumentError(f"meta-batch of {n_languages} languages, but only {len(self.langs)} are available")
        picks = self.rng.choice(len(self.langs), size=n_languages, replace=False, p=self.language_probs)
        return [self._episode(self.langs[i]) for i in picks]

    def episode_shots(self) -> int:
        """The support size of the next episode: ``k_shot``, or a draw from ``min_k_shot..k_shot`` (the RNG is
        only read for a range, so a fixed shape draws the same episodes as before the option existed)."""
        if not 0 < self.min_k_shot < self.k_shot:
            return self.k_shot
        return int(self.rng.integers(self.min_k_shot, self.k_shot + 1))

    def _episode(self, lang: str) -> Episode:
        task = self.tasks[lang]
        eligible = self.eligible[lang]
        n_way = self.n_way or len(eligible)
        classes = sorted(self.rng.choice(eligible, size=n_way, replace=False).tolist())
        k_shot = self.episode_shots()
        support: list[int] = []
        query: list[int] = []
        for label in classes:
            rows = self.rng.choice(task.by_label()[label], size=k_shot + self.k_query, replace=False).tolist()
            support += rows[:k_shot]
            query += rows[k_shot:]
        support = self.rng.permutation(support).tolist()  # no class-ordered batches
        query = self.rng.permutation(query).tolist()
        return Episode.from_rows(lang, task, support, query)

    def state_dict(self) -> dict[str, Any]:
        """The RNG state (plain ints, JSON-safe) for checkpoint and resume."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def without_conflicts(task: LanguageTask) -> LanguageTask:
    """``task`` without the rows whose text also appears with another label (warned, naming the language)."""
    labels_of: dict = {}
    for text, label in zip(task.texts, task.labels):
        labels_of.setdefault(text, set()).add(label)
    conflicting = {text for text, labels in labels_of.items() if len(labels) > 1}
    if not conflicting:
        return task
    kept = [i for i, text in enumerate(task.texts) if text not in conflicting]
    warn(f"language {task.lang}: dropped {len(task) - len(kept)} rows whose text has conflicting labels "
         f"(e.g. {str(next(iter(conflicting)))[:40]!r})")
    return task.subset(kept)


def episode_languages(tasks: dict[str, LanguageTask], n_way: int | None, k_shot: int, k_query: int,
                      what: str = "source") -> dict[str, LanguageTask]:
    """The languages that can make an episode, one policy for every defect: identical texts with
    conflicting labels are dropped, then a language with fewer than ``n_way`` (at least 2) labels of
    ``k_shot + k_query`` rows (a single row, a single class) is skipped; each with a one-line warning.
    No language left: the first one's reason as a `DataError`."""
    need, ways = k_shot + k_query, max(n_way or 2, 2)
    kept, reasons = {}, []
    for lang, task in tasks.items():
        task = without_conflicts(task)
        groups = task.by_label()
        eligible = [label for label, rows in groups.items() if len(rows) >= need]
        if len(eligible) >= ways:
            kept[lang] = task
            continue
        counts = ", ".join(f"{task.label_map.names[label]}={len(rows)}" for label, rows in groups.items()) or "no rows"
        reasons.append(f"language {lang}: only {len(eligible)} label(s) have >= {need} examples (k_shot + k_query), "
                       f"need {ways}; counts: {counts}")
    if not kept:
        raise DataError(reasons[0])
    for reason in reasons:
        warn(f"skipping {what} {reason}")
    return kept
