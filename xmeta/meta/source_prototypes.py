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
a per-language weight). Without a meta head, θ's head becomes s·P_src itself. With the sources' metric
(``prototype_metric="sources"``) the same rows estimate it first (`xmeta.meta.prototype_metric`), and the
prototypes, the prior and P_src are all read in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ArgumentError
from ..modeling.prototype_head import MAX_PRIOR_ROWS, is_head_tensor, prototype_linear
from .batch import LabelledBatch
from .prototype_metric import MetricChoice, choose_metric
from .source_prior import LanguageMeans, prior_rows

# rows per class and source language (tagging: sentences per language × classes); 32 was measured and not adopted
# (README: level on cldr-emoji, -1.3 / -1.1 at K=4 / 16 on gnome-help)
SOURCE_PROTOTYPE_ROWS = 8
METRIC_DEV_ROWS = 64  # dev rows per class and source language that score the metric's α (`choose_metric`)


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
    """What a fold read: the rows, each source language's centred class means (for leave-one-out priors), and
    the metric's choice (None: Euclidean by the model's setting)."""

    rows: int
    language_means: dict[str, LanguageMeans]
    metric: MetricChoice | None = None


def generated_start(model, theta: dict[str, torch.Tensor], lang: str) -> dict[str, torch.Tensor]:
    """``theta`` as source ``lang``'s inner loops start it: with an adapter generator, plus the update generated
    from its leave-one-out representation (a target's zero-shot adapter is read the same way); else ``theta``."""
    generator = model.components.get("adapter_generator")
    if generator is None:
        return theta
    return generator.start_at(model, theta, generator.module.representation(lang)[0])


@torch.no_grad()
def fold_source_prototypes(model, tasks: Mapping, per_class: int = SOURCE_PROTOTYPE_ROWS, seed: int = 0,
                           dev_tasks: Mapping | None = None) -> SourceFold:
    """Make θ's head θ_head + s·P_src over ``tasks`` (the source languages' training tasks) and set the prior.
    With the sources' metric, ``dev_tasks`` (the same languages' dev tasks, where they have them) score its α
    (``prototype_metric_selection="dev"``; "fold": the fold's rows, as folders written before the setting).

    Runs at the end of meta-training, or on a model meta-trained before (a fold replaces an earlier one)."""
    mix = model.prototype_mix
    if mix is None:
        raise ArgumentError("source prototypes need a model meta-trained with --prototype_head on")
    if per_class < 1:
        raise ArgumentError(f"source prototype rows per class must be at least 1 (got {per_class})")
    previous = model.active_language
    model.use_language(None)
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    num_labels = model.config.num_labels
    by_dev = model.config.prototype_metric == "sources" and model.config.prototype_metric_selection == "dev"
    dev_tasks = dev_tasks if by_dev and dev_tasks else {}

    def read(lang: str, task, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = LabelledBatch.build(model, [task.texts[r] for r in rows], [task.labels[r] for r in rows], language=lang)
        with model.reading(lang):
            return mix.features(model, generated_start(model, theta, lang), batch), batch.labels

    features, labels, langs, dev = [], [], [], []
    for i, (lang, task) in enumerate(sorted(tasks.items())):
        rows = stratified_rows(task.labels, num_labels, per_class, seed + i)
        if not rows:
            continue
        feature, label = read(lang, task, rows)
        features.append(feature)
        labels.append(label)
        langs.append(lang)
        dev_rows = stratified_rows(dev_tasks[lang].labels, num_labels, METRIC_DEV_ROWS, seed + i) if lang in dev_tasks else []
        dev.append(read(lang, dev_tasks[lang], dev_rows) if dev_rows else None)
    if not features:
        raise ArgumentError("source prototypes: the source languages have no training rows")
    choice = None
    if model.config.prototype_metric == "sources":
        choice = choose_metric(features, labels, num_labels, prior=mix.prior, within=mix.within, centre=mix.centre,
                               held_out=dev)
        model.config.prototype_metric_shrinkage = choice.shrinkage
    mix.metric.copy_(choice.metric if choice is not None else torch.eye(mix.metric.shape[0]))
    features = [f @ mix.metric for f in features]
    weight, bias = mix.unwhitened(*prototype_linear(torch.cat(features), torch.cat(labels), num_labels))
    prior = prior_rows(features, labels, num_labels)
    scale = mix.log_scale.detach().exp()
    params = model.fast_parameters()
    for name in theta:
        if is_head_tensor(name):
            offset = scale * (weight if name.endswith(".weight") else bias)
            params[name].copy_(mix.started(name, params[name], offset))
    mix.source_weight.copy_(scale * weight)
    mix.source_bias.copy_(scale * bias)
    mix.source_means.copy_(prior.means)
    mix.source_centre.copy_(prior.centre)
    mix.prior_rows.fill_(min(prior.rows, MAX_PRIOR_ROWS))
    mix.within_variance.fill_(prior.within)
    model.use_language(previous)
    return SourceFold(int(sum(len(x) for x in labels)), dict(zip(langs, prior.language_means)), choice)
