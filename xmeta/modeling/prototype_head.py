"""Prototype-initialised heads (first-order Proto-MAML).

Every inner loop (meta-training episodes, dev scoring, `adapt`) starts the head from the support
set's class prototypes under the current fast weights:

    head = s · prototype head,   s = exp(log_scale), a slow weight,

as in Proto-MAML (Triantafillou et al., 2020), whose head is the prototypes alone. With ``meta_head``
(a learned mix) the prototypes are added to a meta-learned head instead: head = meta head + s · prototype
head. On held-out languages that meta head fits the sources' quirks (cldr-emoji, a model trained with
it: 10-target macro-F1 0.453 at K=0 with it, 0.476 with its prototypes alone), so it is off by default.

For each class c present in the support, μ_c is the mean of its support features (exactly what the
head reads: the pooled output, or a word's first sub-token for tagging, with dropout off), and
m is the mean of the present prototypes (centring: the prototype rows stay small next to the meta
rows, whatever the encoder's offset; class imbalance in the support does not move m). With
μ'_c = μ_c − m the prototype rows are W_c = 2μ'_c, b_c = −‖μ'_c‖² − 2μ'_c·m, so

    W_c x + b_c = −‖(x − m) − μ'_c‖² + ‖x − m‖²,

the negative squared distance to the prototype plus a term that is the same for every class of a
row (softmax ignores it). The head is therefore an ordinary linear layer: after adaptation it is
saved, loaded and exported like any head. A class missing from the support keeps its meta-learned
row (its prototype row is zero); K=1 gives prototypes that are single examples.

First order, as in Proto-MAML: the prototypes are constants of the inner loop (no graph to the
support features); the inner loop then adapts the started head like every other fast weight, and
the query gradient at φ_T reaches s, ∂L_Q/∂s = ⟨∇_head L_Q(φ_T), prototype head⟩ (stored as a
log-scale like the inner rates), and, with a meta head, the meta head (∂head/∂meta = I). Without
one, every start replaces θ's head (`PrototypeMix.replaces`), which takes no meta-gradient.

Zero-shot: θ's head learns to complement prototypes and is poor alone, so at the end of
meta-training `xmeta.meta.source_prototypes` folds s · (the source languages' prototype head) into
θ's head (the meta adapter stays an ordinary, exportable linear head that predicts at K=0) and keeps
that offset here (``source_weight``/``source_bias``, saved with θ): every inner loop takes it out
again before adding the support's prototypes.

Adaptation after the fold does not throw the source prototypes away for K noisy support means: each
class's centred prototype is the posterior mean of a normal-normal model, the source mean as prior,

    μ'_c = (τ·μ'_src,c + n_c·μ'_support,c) / (τ + n_c),

(centred in their own language; the result is centred back on the support's mean), so K=1 leans on
the sources and K=16 on the language's own examples, and a class missing from the support takes its
source prototype. The prior's weight τ (in rows) is estimated at the fold from the sources alone:
within-class variance of single rows over the variance of language-specific class means around the
pooled ones (``xmeta.meta.source_prototypes.prior_rows``). Before the fold (meta-training) τ is 0
and the head starts from the support's prototypes alone.

That τ says how far the source languages sit from each other; a new language may sit much farther
(cldr-emoji: τ ≈ 80 among the sources, 5–15 for the targets). With ``prior="per_language"`` (the
default) τ = w / b is estimated for each support from its own distance to the source means
(`PrototypeMix.prior_weight`, empirical Bayes by the method of moments), so a far language trusts
its own examples sooner. With ``within="support"`` (new models) w is the support's own scatter of
rows around their class means: a target's rows scatter less than the sources' (cldr-emoji: 0.73–0.96×),
so the sources' w took most of a K=1 support's distance for noise and all but ignored its examples.
A support of single rows (K=1) cannot tell its scatter from its noise, and takes the sources' τ.

Unlabelled text of the new language (`PrototypeMix.centred_on`) gives it a better centre than its support:
a language shifts every feature (cldr-emoji targets: 0.66-0.97 in norm, Cherokee 1.2, while the sources'
class means lie 0.5-1.1 from their centre); the mean of a few hundred of its texts' features measures that
shift, the mean of K=1's eight single rows only roughly. The text's mean is a row mean, nearer the frequent
classes than a mean of class means (on gnome-help's topics it gains nothing once there are examples). With a
centre, a support's prototypes are centred there (the prior's weight is still read from
the support's own centring), and with no labelled rows at all (K=0) the head is the sources' centred class
means placed there, `text_linear`: zero-shot prediction for the language's own offset, not the sources'.

Without such text, a support's own centre is noisy where it has few rows (K=1: the mean of 8 single rows), and
a new language's offset from the sources' mean centre m0 is often no larger than that noise (cldr-emoji, θ's
whitened features: 0.001-0.003 per feature against a K=1 noise of 0.0012). With ``centre="shrunk"`` (new models) the
support's centre is shrunk toward m0 by James-Stein (`PrototypeMix.shrunk_centre`): its excess distance over the
noise says how much of it is the language's, so K=1 keeps about half of it, K=16 nine tenths, and a far language
(Cherokee) nearly all.

After the fold everything above is read in a metric M (``metric``, identity until then and for Euclidean
models): features x·M, the whitening of the sources' shrunk within-class covariance
(`xmeta.meta.prototype_metric`). The head of x·M is W·M on x (`unwhitened`), still an ordinary linear layer.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call

from ..errors import ArgumentError
from ..scoped import attributes_set

HEAD_MARK = ".classifier.modules_to_save."
# absent in folders written before the fold existed (zero offset, no prior)
SOURCE_KEYS = ("prototype_mix.source_weight", "prototype_mix.source_bias", "prototype_mix.source_means",
               "prototype_mix.prior_rows", "prototype_mix.within_variance", "prototype_mix.metric",
               "prototype_mix.source_centre")
MAX_PRIOR_ROWS = 1e4  # the means agree (almost) exactly: the prior all but fixes the prototypes
PRIORS = ("per_language", "sources")
WITHINS = ("support", "sources")  # whose within-class variance the per-language prior divides by
CENTRES = ("shrunk", "support")  # a support's centre: shrunk toward the sources' (James-Stein), or its own mean


def is_head_tensor(name: str) -> bool:
    """Whether a fast-weight name is a head tensor (weight or bias of an adapter's classifier copy)."""
    return HEAD_MARK in name


def class_means(features: torch.Tensor, labels: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred class means ``[C, d]`` (zero rows for absent classes), their centre ``[d]`` (the mean of
    the present classes' means) and the rows per class ``[C]``."""
    features = features.float()
    one_hot = nn.functional.one_hot(labels, num_labels).to(features.dtype)  # [n, C]
    counts = one_hot.sum(0)
    present = counts > 0
    means = (one_hot.T @ features) / counts.clamp(min=1).unsqueeze(1)
    centre = means[present].mean(0)
    return (means - centre) * present.unsqueeze(1), centre, counts


def within_scatter(features: torch.Tensor, labels: torch.Tensor, centred: torch.Tensor, centre: torch.Tensor,
                   counts: torch.Tensor) -> tuple[float, int]:
    """The rows' summed squared distance to their class means (``class_means``' output) and its degrees of
    freedom (rows less present classes)."""
    return float(((features.float() - centre - centred[labels]) ** 2).sum()), len(labels) - int((counts > 0).sum())


def support_variance(features: torch.Tensor, labels: torch.Tensor, centred: torch.Tensor, centre: torch.Tensor,
                     counts: torch.Tensor) -> float | None:
    """The rows' variance per feature around their class means, unbiased; None when no class has two rows."""
    scatter, dof = within_scatter(features, labels, centred, centre, counts)
    return scatter / dof / features.shape[-1] if dof >= 1 else None


def linear_from_means(centred: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the head whose logits are −‖(x − centre) − μ'_c‖² + (a term equal for every class)."""
    weight = 2 * centred
    return weight, -(centred * centred).sum(1) - weight @ centre


def prototype_linear(features: torch.Tensor, labels: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ``[C, d]`` and bias ``[C]`` of the centred prototype head (zero rows for absent classes)."""
    centred, centre, _ = class_means(features, labels, num_labels)
    return linear_from_means(centred, centre)


class PrototypeMix(nn.Module):
    """The slow log-scale s of the prototype head and the inner loop's prototype start."""

    def __init__(self, num_labels: int, features: int, meta_head: bool = True, prior: str = "sources",
                 within: str = "sources", centre: str = "support") -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"prototype prior must be one of {', '.join(PRIORS)} (got {prior!r})")
        if within not in WITHINS:
            raise ValueError(f"prototype prior's within-class variance must be one of {', '.join(WITHINS)} (got {within!r})")
        if centre not in CENTRES:
            raise ValueError(f"prototype centre must be one of {', '.join(CENTRES)} (got {centre!r})")
        self.meta_head, self.prior, self.within, self.centre = meta_head, prior, within, centre
        self.log_scale = nn.Parameter(torch.zeros(()))
        # s · the source prototype head folded into θ's head (zero until `fold_source_prototypes`)
        self.register_buffer("source_weight", torch.zeros(num_labels, features))
        self.register_buffer("source_bias", torch.zeros(num_labels))
        # the sources' centred class means and the prior's weight τ in rows (0: no prior, before the fold)
        self.register_buffer("source_means", torch.zeros(num_labels, features))
        self.register_buffer("prior_rows", torch.zeros(()))
        # w: the sources' within-class variance of single rows per feature (0: unknown, no per-language prior)
        self.register_buffer("within_variance", torch.zeros(()))
        # M: prototypes, source means and centres are read as x·M (identity: Euclidean; set at the fold)
        self.register_buffer("metric", torch.eye(features))
        # the source languages' mean centre, in the metric: where a support's noisy centre is shrunk toward
        self.register_buffer("source_centre", torch.zeros(features))
        self.language_centre: torch.Tensor | None = None  # the adapted language's own centre (`centred_on`)

    def prior_weight(self, centred: torch.Tensor, counts: torch.Tensor, support_within: float | None = None) -> float:
        """τ for a support with centred class means ``centred`` of ``counts`` rows per class.

        ``prior="per_language"``: b, the variance of this language's class means around the source
        means, is what their mean squared distance per feature exceeds the sampling noise w/n_c by
        (centring over the C present classes shrinks it by 1 − 1/C); τ = w / b, capped at
        `MAX_PRIOR_ROWS`. w is the sources', or with ``within="support"`` ``support_within`` (the
        support's own, `support_variance`; None, as for K=1: the sources' τ). Otherwise, before the
        fold (τ = 0) or without the sources' w: the sources' τ."""
        tau, within = float(self.prior_rows), float(self.within_variance)
        present = counts > 0
        classes = int(present.sum())
        if self.prior != "per_language" or tau <= 0 or within <= 0 or classes < 2:
            return tau
        if self.within == "support":
            if support_within is None or support_within <= 0:
                return tau
            within = support_within
        spread = ((centred - self.source_means) ** 2).mean(1)[present] / (1 - 1 / classes)
        ratio = float((spread / within - 1 / counts[present]).mean())  # b / w
        return MAX_PRIOR_ROWS if ratio <= 1 / MAX_PRIOR_ROWS else 1 / ratio

    def support_linear(self, features: torch.Tensor, labels: torch.Tensor,
                       tau: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The support's prototype head, its class means shrunk toward the source means once there is a prior
        (by ``tau`` rows; None: `prior_weight`'s), all in the metric (`unwhitened`)."""
        features = features.float() @ self.metric
        centred, centre, counts = class_means(features, labels, self.source_means.shape[0])
        own = support_variance(features, labels, centred, centre, counts) if self.within == "support" else None
        if tau is None:
            tau = self.prior_weight(centred, counts, own)
        language_centre = None
        if self.language_centre is not None:
            language_centre = self.language_centre @ self.metric
        elif self.centre == "shrunk" and float(self.prior_rows) > 0:
            language_centre = self.shrunk_centre(centre, counts, own)
        if language_centre is not None:
            centred = (centred + centre - language_centre) * (counts > 0).unsqueeze(1)
            centre = language_centre
        if tau > 0:
            counts = counts.unsqueeze(1)
            centred = (tau * self.source_means + counts * centred) / (tau + counts)
        return self.unwhitened(*linear_from_means(centred, centre))

    def shrunk_centre(self, centre: torch.Tensor, counts: torch.Tensor, support_within: float | None) -> torch.Tensor:
        """A support's centre (the mean of its class means) shrunk toward the sources' mean centre, James-Stein:
        m0 + ρ·(centre − m0), ρ = 1 − v / (‖centre − m0‖² / d) clipped at 0, where v, the centre's sampling noise per
        feature, is w·mean_c(1/n_c)/C over the C present classes (w: ``support_within``, else the sources')."""
        present = counts > 0
        within = support_within if support_within is not None and support_within > 0 else float(self.within_variance)
        noise = within * float((1 / counts[present]).mean()) / int(present.sum())
        offset = centre - self.source_centre
        distance = float((offset * offset).mean())
        keep = max(0.0, 1 - noise / distance) if distance > 0 else 0.0
        return self.source_centre + keep * offset

    def text_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """With no labelled rows: the head of the source class means centred on the language's centre."""
        if self.language_centre is None or not bool(self.source_means.any()):
            raise ArgumentError("a zero-shot head from unlabelled text needs the language's centre and source "
                                "prototypes (a model meta-trained on two or more source languages)")
        return self.unwhitened(*linear_from_means(self.source_means, self.language_centre @ self.metric))

    def unwhitened(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head of features x from the head of x·M (M symmetric)."""
        return weight @ self.metric, bias

    def centred_on(self, centre: torch.Tensor | None) -> contextlib.AbstractContextManager[None]:
        """Prototypes (and `text_linear`) centred on ``centre``, a language's mean feature, inside the block."""
        return attributes_set(self, language_centre=centre)

    def source_offset(self, name: str) -> torch.Tensor:
        """The folded offset of head tensor ``name`` (weight or bias)."""
        return self.source_weight if name.endswith(".weight") else self.source_bias

    @torch.no_grad()
    def features(self, model: nn.Module, weights: dict[str, torch.Tensor], batch) -> torch.Tensor:
        """What the head reads for each row of ``batch`` (chunk order) under ``weights``, dropout off."""
        captured: list[torch.Tensor] = []
        head = model.peft.base_model.model.classifier
        handle = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        was_training = model.training
        model.eval()
        try:
            for inputs, _ in batch.chunks:
                functional_call(model, weights, args=(), kwargs=inputs)
        finally:
            handle.remove()
            model.train(was_training)
        return torch.cat(captured).float()

    def replaces(self, name: str) -> bool:
        """Whether every inner loop's start replaces fast tensor ``name`` (the head, without a meta head)."""
        return not self.meta_head and is_head_tensor(name)

    def start(self, model: nn.Module, fast: dict[str, torch.Tensor],
              support) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``fast`` with its head started from s · the support's prototype head (its means shrunk toward
        the sources'), and that prototype head."""
        return self.start_from(fast, *self.support_linear(self.features(model, fast, support), support.labels))

    def start_from(self, fast: dict[str, torch.Tensor], weight: torch.Tensor,
                   bias: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``fast`` with its head started from s · the prototype head (``weight``, ``bias``), and that head."""
        names = [n for n in fast if is_head_tensor(n)]
        prototype = {n: (weight if n.endswith(".weight") else bias) for n in names}
        scale = self.log_scale.detach().exp()
        moved = {n: self.started(n, w, scale * prototype[n]) if n in prototype else w for n, w in fast.items()}
        return moved, prototype

    def started(self, name: str, head: torch.Tensor, prototype: torch.Tensor) -> torch.Tensor:
        """Head tensor ``name`` at the start: the scaled ``prototype`` head alone, or with a meta head, added
        to θ_head less the folded source offset (θ_head + s·P_support)."""
        if not self.meta_head:
            return prototype.to(head.dtype)
        return head + (prototype - self.source_offset(name)).to(head.dtype)

    def scale_gradient(self, query_grads: dict[str, torch.Tensor], prototype: dict[str, torch.Tensor]) -> torch.Tensor:
        """∂L_Q/∂log s = s · Σ ⟨∇_head L_Q(φ_T), prototype head⟩ (first order)."""
        inner = sum((query_grads[n].float() * p).sum() for n, p in prototype.items() if query_grads.get(n) is not None)
        return self.log_scale.detach().exp() * inner
