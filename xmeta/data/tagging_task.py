"""Tagging as language-as-task episodes: one `TaggingTask` per language and a sentence sampler.

An episode's support and query are disjoint sets of K sentences. With ``per_entity`` the support
is drawn the Few-NERD way instead: sentences are added (in random order) while some entity type
still has fewer than K mentions, so rare types are present in every episode.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from xmeta.data.sampler import Episode, EpisodeSampler, _positive
from xmeta.data.task import LabelMap
from xmeta.errors import DataError


def tag_map(tags: Iterable[str]) -> LabelMap:
    """Tags in a stable order: ``O`` first, then by entity type with B- before I- (else sorted)."""
    names = set(tags)
    return LabelMap(tuple(sorted(names, key=lambda t: (t != "O", entity_type(t), t))))


def entity_type(tag: str) -> str:
    """``B-PER``/``I-PER`` -> ``PER``; ``O`` -> ""; a tag without a BIO prefix (POS) is its own type."""
    if tag == "O":
        return ""
    return tag[2:] if tag[:2] in ("B-", "I-", "E-", "S-") else tag


@dataclass
class TaggingTask:
    """The tagged sentences of one language; ``labels`` are per-word ids of the shared ``label_map``."""

    lang: str
    texts: list[list[str]]
    labels: list[list[int]]
    label_map: LabelMap

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels) or any(len(w) != len(t) for w, t in zip(self.texts, self.labels)):
            raise DataError(f"language {self.lang}: sentences and tags differ in length")

    def __len__(self) -> int:
        return len(self.texts)

    def tags(self, index: int) -> list[str]:
        return [self.label_map.names[i] for i in self.labels[index]]

    def mentions(self, index: int) -> dict[str, int]:
        """Entity mentions per type in one sentence (a mention starts at B-, or at any POS word)."""
        counts: dict[str, int] = defaultdict(int)
        for tag in self.tags(index):
            if entity_type(tag) and not tag.startswith("I-"):
                counts[entity_type(tag)] += 1
        return counts

    shot_unit = "sentences"  # what K counts in a K-shot set of this task kind

    @property
    def max_shots(self) -> int:
        return len(self)

    def shots(self, k: int, seed: int) -> list[int]:
        """Indices of K sentences (`sample_k_sentences`), the same for the same (k, seed)."""
        return sample_k_sentences(self, k, seed)

    def examples(self, indices: Sequence[int]) -> list[tuple[list[str], list[str]]]:
        """Sentences as ``model.adapt`` reads them: (words, tag names)."""
        return [(self.texts[i], self.tags(i)) for i in indices]

    def subset(self, indices: Sequence[int]) -> TaggingTask:
        return TaggingTask(self.lang, [self.texts[i] for i in indices], [self.labels[i] for i in indices], self.label_map)


def tagging_tasks_from_dataset(dataset: Dataset, label_map: LabelMap | None = None,
                               origin: str = "dataset") -> dict[str, TaggingTask]:
    """Group a Dataset (tokens, tags, lang) into one TaggingTask per language."""
    columns = dataset.to_dict()
    label_map = label_map or tag_map(t for row in columns["tags"] for t in row)
    rows: dict[str, list[int]] = defaultdict(list)
    for index, lang in enumerate(columns["lang"]):
        rows[lang].append(index)
    return {
        lang: TaggingTask(
            lang=lang,
            texts=[columns["tokens"][i] for i in indices],
            labels=[label_map.encode(columns["tags"][i], f"{origin}, language {lang}, sentence {i}") for i in indices],
            label_map=label_map,
        )
        for lang, indices in rows.items()
    }


def greedy_entity_shots(task: TaggingTask, k: int, order: Sequence[int]) -> list[int]:
    """Sentences from ``order`` taken while they add a mention of a type that has fewer than ``k``."""
    counts: dict[str, int] = defaultdict(int)
    types = {entity_type(name) for name in task.label_map.names} - {""}
    chosen = []
    for index in order:
        found = task.mentions(index)
        if any(counts[t] < k for t in found):
            chosen.append(index)
            for t, n in found.items():
                counts[t] += n
        if all(counts[t] >= k for t in types):
            break
    return chosen


def sample_k_sentences(task: TaggingTask, k: int, seed: int, per_entity: bool = False) -> list[int]:
    """Indices (sorted) of K sentences, or of sentences covering K mentions per entity type."""
    _positive("k", k)
    if not per_entity and len(task) < k:
        raise DataError(f"language {task.lang}: {len(task)} sentences, fewer than k={k}")
    order = np.random.default_rng(seed).permutation(len(task)).tolist()
    return sorted(greedy_entity_shots(task, k, order) if per_entity else order[:k])


class SentenceEpisodeSampler(EpisodeSampler):
    """Episodes of K support and K query sentences per language (language choice, meta-batches and
    the checkpointed RNG are `EpisodeSampler`'s); ``per_entity``: K mentions per type in the support."""

    def __init__(self, tasks: dict[str, TaggingTask], k_shot: int, k_query: int, seed: int,
                 per_entity: bool = False, **kwargs: object) -> None:
        self.per_entity = per_entity
        super().__init__(tasks, None, k_shot, k_query, seed, **kwargs)

    def _eligible(self, task: TaggingTask) -> list[int]:
        need = self.k_query + (1 if self.per_entity else self.k_shot)
        if len(task) < need:
            raise DataError(f"language {task.lang}: {len(task)} sentences, fewer than the {need} an episode needs "
                            "(k_shot + k_query)")
        return []

    def _episode(self, lang: str) -> Episode:
        task = self.tasks[lang]
        order = self.rng.permutation(len(task)).tolist()
        query = order[: self.k_query]
        rest = order[self.k_query :]
        k_shot = self.episode_shots()
        support = (greedy_entity_shots(task, k_shot, rest) if self.per_entity else []) or rest[:k_shot]
        return Episode.from_rows(lang, task, support, query)
