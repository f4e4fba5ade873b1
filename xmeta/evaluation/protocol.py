"""The few-shot protocol: K labelled shots drawn by seed, adapt, score; mean ± std over seeds.

One loop for every task kind. What differs sits behind a small interface: the task draws its
shots and hands them over in the shape ``model.adapt`` reads (``shots``, ``examples``: K examples
per class, or K sentences for tagging), and `score_task` picks the metrics (accuracy and macro-F1,
or token accuracy and seqeval entity scores).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..data import LanguageTask, TaggingTask
from ..modeling import META_ADAPTER
from .metrics import classification_scores, tagging_scores

HEADLINES = ("f1", "macro_f1")  # the metric a report leads with: entity F1 (BIO tags), else macro-F1


@dataclass
class ShotResult:
    k: int
    seed: int
    scores: dict[str, float]
    shot_ids: list[int] = field(default_factory=list)
    adapt_seconds: float = 0.0

    def to_dict(self) -> dict:
        """The scores sit next to k and seed, as in every results.json."""
        return {"k": self.k, "seed": self.seed, **self.scores, "shot_ids": self.shot_ids,
                "adapt_seconds": self.adapt_seconds}


@dataclass
class LanguageEvaluation:
    lang: str
    test_size: int
    runs: list[ShotResult]
    shot_unit: str = LanguageTask.shot_unit

    @property
    def metrics(self) -> list[str]:
        """The runs' metric names, the headline metric first."""
        names = list(self.runs[0].scores) if self.runs else []
        return sorted(names, key=lambda name: name not in HEADLINES)

    def summary(self) -> dict[int, dict[str, float]]:
        """Per K: mean and (population) std of every metric over seeds."""
        out: dict[int, dict[str, float]] = {}
        for k in sorted({r.k for r in self.runs}):
            rows = [r for r in self.runs if r.k == k]
            out[k] = {"n_seeds": len(rows)}
            for metric in self.metrics:
                values = [r.scores[metric] for r in rows]
                out[k][f"{metric}_mean"] = statistics.fmean(values)
                out[k][f"{metric}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        return out

    def to_dict(self) -> dict:
        return {"lang": self.lang, "test_size": self.test_size, "shot_unit": self.shot_unit,
                "runs": [r.to_dict() for r in self.runs], "summary": {str(k): v for k, v in self.summary().items()}}


def score_texts(model, texts: Sequence[str], labels: Sequence[int], lang: str | None,
                language: str | None = None) -> dict[str, float]:
    predicted = model.predict_proba(list(texts), lang=lang, language=language).argmax(-1).tolist()
    return classification_scores(list(labels), predicted)


def score_task(model, test: LanguageTask | TaggingTask, lang: str | None) -> dict[str, float]:
    """``lang``'s adapter on ``test`` (texts of ``test.lang``): accuracy and macro-F1, or tagging
    scores (seqeval for BIO tags)."""
    if isinstance(test, TaggingTask):
        return tagging_scores([test.tags(i) for i in range(len(test))],
                              model.predict(test.texts, lang=lang, language=test.lang))
    return score_texts(model, test.texts, test.labels, lang, language=test.lang)


def few_shot_evaluation(
    model, train: LanguageTask | TaggingTask, test: LanguageTask | TaggingTask, shots: Sequence[int],
    seeds: Sequence[int], adapt_steps: int | None = None, target_text: Sequence[str] = (),
) -> LanguageEvaluation:
    """For each K and seed: adapt a scratch copy of θ on a K-shot set of ``train``, score on ``test``.

    K=0 scores θ itself (zero-shot transfer), or with an adapter generator the adapter it generates for
    ``train.lang``; it does not depend on the seed, so it runs once. With ``target_text`` (unlabelled text of
    the language) every run adapts with it, K=0 too (`xmeta.adapt.adapt_language`: the language's centre).
    Romanisation is decided for ``train.lang`` from its training text before any run.
    """
    scratch = f"{test.lang}_eval"
    model.decide_romanization(train.lang, train.texts)
    runs: list[ShotResult] = []
    plan = [(k, s) for k in shots for s in (seeds[:1] if k == 0 else seeds)]
    for k, seed in tqdm(plan, desc=f"evaluate {test.lang}", unit="run", dynamic_ncols=True):
        if k == 0 and model.adapter_generator is None and not target_text:
            runs.append(ShotResult(k, seed, score_task(model, test, META_ADAPTER)))
            continue
        ids = train.shots(k, seed) if k else []
        result = model.adapt(train.examples(ids), lang=scratch, steps=adapt_steps, seed=seed, language=train.lang,
                             allow_missing_labels=True,  # stratified: every label this language has
                             target_text=target_text)
        runs.append(ShotResult(k, seed, score_task(model, test, scratch), shot_ids=list(ids),
                               adapt_seconds=result.seconds))
        model.drop_language(scratch)
    return LanguageEvaluation(test.lang, len(test), runs, train.shot_unit)
