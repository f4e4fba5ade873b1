"""The prior a support's class means are shrunk toward: the source languages' class means and its weight.

Normal-normal model per class and feature (`prior_rows`); read at the fold (`xmeta.meta.source_prototypes`)
from the rows the source prototypes come from, and, leaving one source language out, by the choice of the
adaptation steps (`xmeta.meta.adapt_steps`) and of the prototype metric (`xmeta.meta.prototype_metric`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..modeling.prototype_head import class_means, within_scatter


def pool_language_means(stacked: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Languages' centred class means ``[L, C, d]`` (absent classes: zero rows; ``present`` ``[L, C]``)
    pooled per class over the languages that have it, then centred over the classes any language has."""
    pooled = (stacked * present.unsqueeze(-1)).sum(0) / present.sum(0).clamp(min=1).unsqueeze(1)
    return pooled - pooled[present.sum(0) > 0].mean(0)


@dataclass
class LanguageMeans:
    """One source language's class means centred on its centre (absent classes: zero rows) ``[C, d]``, and that
    centre ``[d]`` (the mean of its class means)."""

    centred: torch.Tensor
    centre: torch.Tensor


def pool_languages(languages: list[LanguageMeans]) -> LanguageMeans:
    """The languages' pooled centred class means (`pool_language_means`) and their mean centre."""
    stacked = torch.stack([language.centred for language in languages])
    return LanguageMeans(pool_language_means(stacked, (stacked.abs().sum(-1) > 0).float()),
                         torch.stack([language.centre for language in languages]).mean(0))


@dataclass
class SourcePrior:
    """The pooled centred source class means ``[C, d]``, the prior's weight τ in rows, w (see `prior_rows`) and the
    languages' mean centre ``[d]``; each language's means, in the order given (the leave-one-out priors)."""

    means: torch.Tensor
    rows: float
    within: float
    centre: torch.Tensor
    language_means: list[LanguageMeans]


def prior_rows(features: list[torch.Tensor], labels: list[torch.Tensor], num_labels: int) -> SourcePrior:
    """The pooled source class means (each language centred on its own mean), the prior's weight τ, w and the
    languages' mean centre.

    Normal-normal model per class and feature: a language's class mean scatters around the pooled
    mean with variance b, single rows around their language's class mean with variance w; the
    posterior mean of a class seen n times is then (τ·prior + n·mean)/(τ + n) with τ = w / b. Both are
    estimated from the sources: b from the scatter of the languages' centred class means around the
    pooled ones, less the sampling noise of a mean of n rows (w/n), with centring over C classes and
    pooling over L languages shrinking the scatter by (1 − 1/C)(1 − 1/L). One source language: no
    scatter to measure, τ = 0 (the support's prototypes alone)."""
    per_language = [class_means(f, y, num_labels) for f, y in zip(features, labels)]
    languages = [LanguageMeans(centred, centre) for centred, centre, _ in per_language]
    mean_centre = torch.stack([language.centre for language in languages]).mean(0)
    if len(per_language) < 2:
        return SourcePrior(torch.zeros(num_labels, features[0].shape[-1]), 0.0, 0.0, mean_centre, languages)
    present = torch.stack([counts > 0 for _, _, counts in per_language]).float()  # [L, C]
    stacked = torch.stack([centred for centred, _, _ in per_language])  # [L, C, d]
    pooled = pool_language_means(stacked, present)
    within, dof = 0.0, 0
    for (centred, centre, counts), f, y in zip(per_language, features, labels):
        scatter, rows = within_scatter(f, y, centred, centre, counts)
        within += scatter
        dof += rows
    dims = stacked.shape[-1]
    w = within / max(dof, 1) / dims
    classes, langs = float(present.sum(1).mean()), len(per_language)
    centring = (1 - 1 / classes) * (1 - 1 / langs)
    counts = torch.stack([counts for _, _, counts in per_language]).clamp(min=1)
    scatter = ((stacked - pooled) ** 2).sum(-1) / dims / centring - w / counts
    b = float((scatter * present).sum() / present.sum())
    return SourcePrior(pooled, w / b if b > 0 else float("inf"), w, mean_centre, languages)
