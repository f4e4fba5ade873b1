"""Preflight: every data precondition a run will meet, checked before its first training step.

Each check returns problems, one line each (language, split, label, count, need), so a run with
several shortfalls names all of them at once; `raise_problems` turns them into one error.
A run that passes its preflight does not stop later for lack of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from xmeta.data.tagging_task import TaggingTask
from xmeta.data.task import LanguageTask
from xmeta.errors import DataError

Task = LanguageTask | TaggingTask


class PreflightError(DataError):
    """The data cannot support the run as configured (every shortfall is listed, one per line)."""


def class_shortfalls(task: Task, split: str, need: int, why: str) -> list[str]:
    """Labels of ``task`` with fewer than ``need`` rows (a label the language lacks counts 0);
    for tagging data, fewer than ``need`` sentences."""
    if isinstance(task, TaggingTask):
        count = len(task)
        return [] if count >= need else [f"language {task.lang} ({split}): {count} sentences; {why} needs {need}"]
    rows = task.by_label()
    return [f"language {task.lang} ({split}): label '{name}' has {len(rows.get(label, []))} examples; {why} needs {need}"
            for label, name in enumerate(task.label_map.names) if len(rows.get(label, [])) < need]


def episode_problems(train: Mapping[str, Task], dev: Mapping[str, Task] | None, *, k_shot: int, k_query: int,
                     n_way: int, meta_batch: int, dev_episodes: int) -> list[str]:
    """Meta-training: every label of every source has a support and a disjoint query set; dev
    episodes find at least ``n_way`` (at least one) such labels per language; the meta-batch and
    the dev episodes (one language each, drawn without replacement) fit the languages."""
    need = k_shot + k_query
    why = f"episodes (k_shot {k_shot} + k_query {k_query})"
    problems = [line for task in train.values() for line in class_shortfalls(task, "train", need, why)]
    for task in (dev or {}).values():
        if isinstance(task, TaggingTask):
            problems += class_shortfalls(task, "dev", need, f"dev {why}")
            continue
        usable = sum(len(rows) >= need for rows in task.by_label().values())
        if usable < max(1, n_way):
            problems.append(f"language {task.lang} (dev): {usable} label(s) have >= {need} examples; "
                            f"dev {why} need {max(1, n_way)}")
    if meta_batch > len(train):
        problems.append(f"--meta_batch {meta_batch} exceeds the {len(train)} source languages")
    if dev and dev_episodes > len(dev):
        problems.append(f"--dev_episodes {dev_episodes} exceeds the {len(dev)} source languages with dev rows")
    return problems


def shot_problems(tasks: Iterable[Task], split: str, k: int, why: str) -> list[str]:
    """K-shot sets: ``k`` rows of every label in each language."""
    return [line for task in tasks for line in class_shortfalls(task, split, k, why)] if k > 0 else []


def raise_problems(problems: list[str]) -> None:
    """One error listing every problem, one line each (the first shares the line with the count)."""
    problems = list(dict.fromkeys(problems))
    if problems:
        first, *rest = problems
        count = f"{len(problems)} problems" if rest else "1 problem"
        raise PreflightError("\n  ".join([f"preflight found {count} (nothing was trained): {first}", *rest]))
