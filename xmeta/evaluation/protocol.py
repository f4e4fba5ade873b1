"""The few-shot protocol: K labelled examples per class drawn by seed, adapt, score; mean ± std."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from ..data import LanguageTask, sample_k_shot
from ..modeling import META_ADAPTER
from .metrics import classification_scores


@dataclass
class ShotResult:
    k: int
    seed: int
    accuracy: float
    macro_f1: float
    shot_ids: list[int] = field(default_factory=list)
    adapt_seconds: float = 0.0


@dataclass
class LanguageEvaluation:
    lang: str
    test_size: int
    runs: list[ShotResult]

    def summary(self) -> dict[int, dict[str, float]]:
        """Per K: mean and (population) std of accuracy and macro-F1 over seeds."""
        out: dict[int, dict[str, float]] = {}
        for k in sorted({r.k for r in self.runs}):
            rows = [r for r in self.runs if r.k == k]
            out[k] = {"n_seeds": len(rows)}
            for metric in ("accuracy", "macro_f1"):
                values = [getattr(r, metric) for r in rows]
                out[k][f"{metric}_mean"] = statistics.fmean(values)
                out[k][f"{metric}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        return out

    def to_dict(self) -> dict:
        return {"lang": self.lang, "test_size": self.test_size, "runs": [asdict(r) for r in self.runs],
                "summary": {str(k): v for k, v in self.summary().items()}}


def score_texts(model, texts: Sequence[str], labels: Sequence[int], lang: str | None) -> dict[str, float]:
    predicted = model.predict_proba(list(texts), lang=lang).argmax(-1).tolist()
    return classification_scores(list(labels), predicted)


def few_shot_evaluation(
    model, train: LanguageTask, test: LanguageTask, shots: Sequence[int], seeds: Sequence[int],
    adapt_steps: int | None = None,
) -> LanguageEvaluation:
    """For each K and seed: adapt a scratch copy of θ on K examples per class, score on ``test``.

    K=0 scores θ itself (zero-shot transfer); it does not depend on the seed, so it runs once.
    """
    scratch = f"{test.lang}_eval"
    runs: list[ShotResult] = []
    plan = [(k, s) for k in shots for s in (seeds[:1] if k == 0 else seeds)]
    for k, seed in tqdm(plan, desc=f"evaluate {test.lang}", unit="run", dynamic_ncols=True):
        if k == 0:
            scores = score_texts(model, test.texts, test.labels, lang=META_ADAPTER)
            runs.append(ShotResult(k, seed, **scores))
            continue
        ids = sample_k_shot(train, k, seed)
        examples = [(train.texts[i], model.config.id2label[train.labels[i]]) for i in ids]
        result = model.adapt(examples, lang=scratch, steps=adapt_steps, seed=seed)
        scores = score_texts(model, test.texts, test.labels, lang=scratch)
        runs.append(ShotResult(k, seed, **scores, shot_ids=list(ids), adapt_seconds=result.seconds))
        model.drop_language(scratch)
    return LanguageEvaluation(test.lang, len(test.texts), runs)
