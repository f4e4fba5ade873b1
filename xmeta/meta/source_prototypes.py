"""Source prototypes for zero-shot prediction with a prototype head.

With ``prototype_head`` on, θ's head learns to complement the support's prototypes and predicts
poorly alone (K=0). Here the missing prototypes come from the source languages: a stratified sample
of every source language's training rows (the same number per class and language, pooled so that no
language or class dominates), read under θ exactly as the head reads them (with an adapter generator, under each language's generated
start, as a target's zero-shot adapter reads its texts), gives the source
prototype head P_src; θ's head becomes θ_head + s·P_src, and `PrototypeMix` keeps s·P_src so that
adaptation starts from θ_head + s·P_support (see `xmeta.modeling.prototype_head`). The same rows give
the prior adaptation shrinks a support's class means toward: the sources' class means, each centred in
its own language, the prior's weight in rows (`prior_rows`) and the rows' within-class variance (for
a per-language weight). Without a meta head, θ's head becomes s·P_src itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ArgumentError
from ..modeling.prototype_head import MAX_PRIOR_ROWS, class_means, is_head_tensor, prototype_linear, within_scatter
from .batch import LabelledBatch

SOURCE_PROTOTYPE_ROWS = 8  # rows per class and source language (tagging: sentences per language × classes)


def pool_language_means(stacked: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Languages' centred class means ``[L, C, d]`` (absent classes: zero rows; ``present`` ``[L, C]``)
    pooled per class over the languages that have it, then centred over the classes any language has."""
    pooled = (stacked * present.unsqueeze(-1)).sum(0) / present.sum(0).clamp(min=1).unsqueeze(1)
    return pooled - pooled[present.sum(0) > 0].mean(0)


@dataclass
class SourcePrior:
    """The pooled centred source class means ``[C, d]``, the prior's weight τ in rows, and w (see `prior_rows`);
    each language's centred class means, in the order given (the adapt-step selection's leave-one-out priors)."""

    means: torch.Tensor
    rows: float
    within: float
    language_means: list[torch.Tensor]


def prior_rows(features: list[torch.Tensor], labels: list[torch.Tensor], num_labels: int) -> SourcePrior:
    """The pooled source class means (each language centred on its own mean), the prior's weight τ and w.

    Normal-normal model per class and feature: a language's class mean scatters around the pooled
    mean with variance b, single rows around their language's class mean with variance w; the
    posterior mean of a class seen n times is then (τ·prior + n·mean)/(τ + n) with τ = w / b. Both are
    estimated from the sources: b from the scatter of the languages' centred class means around the
    pooled ones, less the sampling noise of a mean of n rows (w/n), with centring over C classes and
    pooling over L languages shrinking the scatter by (1 − 1/C)(1 − 1/L). One source language: no
    scatter to measure, τ = 0 (the support's prototypes alone)."""
    per_language = [class_means(f, y, num_labels) for f, y in zip(features, labels)]
    if len(per_language) < 2:
        return SourcePrior(torch.zeros(num_labels, features[0].shape[-1]), 0.0, 0.0, [c for c, _, _ in per_language])
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
    return SourcePrior(pooled, w / b if b > 0 else float("inf"), w, list(stacked))


def stratified_rows(labels, num_labels: int, per_class: int, seed: int) -> list[int]:
    """Up to ``per_class`` row indices of each class (classification), or ``per_class · num_labels``
    sentences (tagging: a sentence holds many tags), drawn without replacement."""
    rng = np.random.default_rng(seed)
    if labels and not isinstance(labels[0], int):
        return sorted(rng.permutation(len(labels))[:per_class * num_labels].tolist())
    rows: list[int] = []
    by_class = np.asarray(labels)
    for c in range(num_labels):
        ids = np.flatnonzero(by_class == c)
        rows += rng.permutation(ids)[:per_class].tolist()
    return sorted(rows)


@dataclass
class SourceFold:
    """What a fold read: the rows, and each source language's centred class means (for leave-one-out priors)."""

    rows: int
    language_means: dict[str, torch.Tensor]


def generated_start(model, theta: dict[str, torch.Tensor], lang: str) -> dict[str, torch.Tensor]:
    """``theta`` as source ``lang``'s inner loops start it: with an adapter generator, plus the update generated
    from its leave-one-out representation (a target's zero-shot adapter is read the same way); else ``theta``."""
    generator = model.components.get("adapter_generator")
    if generator is None:
        return theta
    return generator.start_at(model, theta, generator.module.representation(lang)[0])


@torch.no_grad()
def fold_source_prototypes(model, tasks: Mapping, per_class: int = SOURCE_PROTOTYPE_ROWS, seed: int = 0) -> SourceFold:
    """Make θ's head θ_head + s·P_src over ``tasks`` (the source languages' training tasks) and set the prior.

    Runs at the end of meta-training, or on a model meta-trained before (a fold replaces an earlier one)."""
    mix = model.prototype_mix
    if mix is None:
        raise ArgumentError("source prototypes need a model meta-trained with --prototype_head on")
    if per_class < 1:
        raise ArgumentError(f"source prototype rows per class must be at least 1 (got {per_class})")
    previous = model.active_language
    model.use_language(None)
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    features, labels, langs = [], [], []
    for i, (lang, task) in enumerate(sorted(tasks.items())):
        rows = stratified_rows(task.labels, model.config.num_labels, per_class, seed + i)
        if not rows:
            continue
        batch = LabelledBatch.build(model, [task.texts[r] for r in rows], [task.labels[r] for r in rows], language=lang)
        with model.reading(lang):
            features.append(mix.features(model, generated_start(model, theta, lang), batch))
        labels.append(batch.labels)
        langs.append(lang)
    if not features:
        raise ArgumentError("source prototypes: the source languages have no training rows")
    weight, bias = prototype_linear(torch.cat(features), torch.cat(labels), model.config.num_labels)
    prior = prior_rows(features, labels, model.config.num_labels)
    scale = mix.log_scale.detach().exp()
    params = model.fast_parameters()
    for name in theta:
        if is_head_tensor(name):
            offset = scale * (weight if name.endswith(".weight") else bias)
            params[name].copy_(mix.started(name, params[name], offset))
    mix.source_weight.copy_(scale * weight)
    mix.source_bias.copy_(scale * bias)
    mix.source_means.copy_(prior.means)
    mix.prior_rows.fill_(min(prior.rows, MAX_PRIOR_ROWS))
    mix.within_variance.fill_(prior.within)
    model.use_language(previous)
    return SourceFold(int(sum(len(x) for x in labels)), dict(zip(langs, prior.language_means)))
