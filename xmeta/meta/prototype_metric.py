"""The prototype head's metric: distance under the source languages' shared within-class covariance.

Euclidean prototypes weigh every feature direction alike, while a language's rows scatter around their
class means much more along some directions than along others. The nearest prototype under the rows'
within-class covariance Σ is linear discriminant analysis (in few-shot learning: Simple CNAPS, Bateni
et al., 2020). Σ is estimated at the fold from the rows it reads (8 per class and source language:
1,856 rows in 384 dimensions on cldr-emoji), pooled over the sources, each row taken around its own
language's class mean; so few rows need shrinking toward a scaled identity,

    Σ_α = (1 − α)·S + α·(tr S / d)·I,

and α is chosen on the sources themselves (`choose_metric`): each source language in turn is held out,
Σ_α and the prior are estimated from the others, and supports of 1 and 4 rows per class of its dev rows
classify its other dev rows (without dev rows: its fold rows). Dev rows, because on parallel data the fold
rows of different languages name the same items (CLDR: translations of the same emoji), so a held-out
language's fold rows are partly known to the others' means and covariance, and the dev split's items are
in no training row (cldr-emoji: 0.25 on the fold rows, 0.5 on the dev rows). α = 1 is the Euclidean head,
so a task where the covariance does not help keeps it.

The metric is kept as the whitening matrix M = Σ_α^{-1/2}·√(tr S / d) (M = I at α = 1, so distances
keep their scale): the prototype head of the whitened features x·M is W·M on the features themselves,
an ordinary linear layer (`PrototypeMix.support_linear`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean

import numpy as np
import torch

from ..modeling.prototype_head import MAX_PRIOR_ROWS, PrototypeMix, class_means
from .source_prior import prior_rows

SHRINKAGE_CANDIDATES = (0.1, 0.25, 0.5, 0.75, 1.0)  # 1: Euclidean
METRIC_SELECTION_SHOTS = (1, 4)  # support rows per class of the held-out language
METRIC_SELECTION_SEEDS = 5  # supports drawn per held-out language and size


def within_scatter_matrix(features: torch.Tensor, labels: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, int]:
    """The rows' summed outer products around their class means ``[d, d]`` (float64) and its degrees of freedom."""
    centred, centre, counts = class_means(features, labels, num_labels)
    residual = (features.float() - centre - centred[labels]).double()
    return residual.T @ residual, len(labels) - int((counts > 0).sum())


def whitening(scatter: torch.Tensor, dof: int, shrinkage: float) -> torch.Tensor:
    """M = Σ_α^{-1/2}·√(tr S / d) for the covariance S = ``scatter`` / ``dof`` shrunk by ``shrinkage`` (α)."""
    dims = scatter.shape[0]
    covariance = scatter / max(dof, 1)
    scale = float(torch.trace(covariance)) / dims
    if shrinkage >= 1 or scale <= 0:
        return torch.eye(dims)
    shrunk = (1 - shrinkage) * covariance + shrinkage * scale * torch.eye(dims, dtype=covariance.dtype)
    values, vectors = torch.linalg.eigh(shrunk)
    return (vectors @ torch.diag(values.clamp(min=scale * 1e-6) ** -0.5) @ vectors.T * scale ** 0.5).float()


@dataclass
class MetricChoice:
    """The chosen whitening matrix, its shrinkage α and the held-out accuracy of every candidate α."""

    metric: torch.Tensor
    shrinkage: float
    scores: dict[float, float]


def held_out_accuracy(mix: PrototypeMix, features: torch.Tensor, labels: torch.Tensor, num_labels: int,
                      shots: Sequence[int], seeds: int) -> list[float]:
    """Query accuracy of ``mix``'s shrunk support prototypes, supports of each size in ``shots`` drawn from
    ``features`` per class (``seeds`` draws each), the language's other rows the queries."""
    scores, by_class = [], [np.flatnonzero(labels.numpy() == c) for c in range(num_labels)]
    for k in shots:
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            drawn = [rng.permutation(rows) for rows in by_class if len(rows) > k]
            if len(drawn) < 2:  # too few rows for a support and queries of two classes
                continue
            support = torch.from_numpy(np.concatenate([rows[:k] for rows in drawn]))
            query = torch.from_numpy(np.concatenate([rows[k:] for rows in drawn]))
            weight, bias = mix.support_linear(features[support], labels[support])
            scores.append(float(((features[query] @ weight.T + bias).argmax(-1) == labels[query]).float().mean()))
    return scores


def choose_metric(features: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], num_labels: int, prior: str,
                  within: str, centre: str, candidates: Sequence[float] = SHRINKAGE_CANDIDATES,
                  shots: Sequence[int] = METRIC_SELECTION_SHOTS, seeds: int = METRIC_SELECTION_SEEDS,
                  held_out: Sequence[tuple[torch.Tensor, torch.Tensor] | None] | None = None) -> MetricChoice:
    """α by leave-one-source-language-out accuracy (ties: the larger α, nearer Euclidean); the metric from every
    source at that α. ``prior``/``within``/``centre`` are the model's prior settings (`PrototypeMix`). A held-out
    language is scored on ``held_out[i]`` (its dev rows' features and labels) where given, else on its fold rows."""
    scatters = [within_scatter_matrix(f, y, num_labels) for f, y in zip(features, labels)]
    total, dof = sum(s for s, _ in scatters), sum(n for _, n in scatters)
    if len(features) < 2:
        return MetricChoice(whitening(total, dof, 1.0), 1.0, {})
    scores: dict[float, list[float]] = {alpha: [] for alpha in candidates}
    for held in range(len(features)):
        rest_scatter, rest_dof = total - scatters[held][0], dof - scatters[held][1]
        others = [i for i in range(len(features)) if i != held]
        for alpha in candidates:
            metric = whitening(rest_scatter, rest_dof, alpha)
            fold = prior_rows([features[i] @ metric for i in others], [labels[i] for i in others], num_labels)
            mix = PrototypeMix(num_labels, metric.shape[0], meta_head=False, prior=prior, within=within, centre=centre)
            mix.source_means.copy_(fold.means)
            mix.source_centre.copy_(fold.centre)
            mix.prior_rows.fill_(min(fold.rows, MAX_PRIOR_ROWS))
            mix.within_variance.fill_(fold.within)
            rows, gold = held_out[held] if held_out and held_out[held] is not None else (features[held], labels[held])
            scores[alpha] += held_out_accuracy(mix, rows @ metric, gold, num_labels, shots, seeds)
    means = {alpha: mean(v) if v else 0.0 for alpha, v in scores.items()}
    best = max(candidates, key=lambda alpha: (round(means[alpha], 4), alpha))
    return MetricChoice(whitening(total, dof, best), best, means)
