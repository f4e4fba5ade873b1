"""Prototype-initialised heads (first-order Proto-MAML).

Every inner loop (meta-training episodes, dev scoring, `adapt`) starts the head from the support
set's class prototypes under the current fast weights, added to the meta-learned head:

    head = meta head + s · prototype head,   s = exp(log_scale), a slow weight.

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
the query gradient at φ_T reaches the meta head (∂head/∂meta = I) and s:
∂L_Q/∂s = ⟨∇_head L_Q(φ_T), prototype head⟩, stored as a log-scale like the inner rates.

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
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

HEAD_MARK = ".classifier.modules_to_save."
# absent in folders written before the fold existed (zero offset, no prior)
SOURCE_KEYS = ("prototype_mix.source_weight", "prototype_mix.source_bias", "prototype_mix.source_means",
               "prototype_mix.prior_rows")


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

    def __init__(self, num_labels: int, features: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))
        # s · the source prototype head folded into θ's head (zero until `fold_source_prototypes`)
        self.register_buffer("source_weight", torch.zeros(num_labels, features))
        self.register_buffer("source_bias", torch.zeros(num_labels))
        # the sources' centred class means and the prior's weight τ in rows (0: no prior, before the fold)
        self.register_buffer("source_means", torch.zeros(num_labels, features))
        self.register_buffer("prior_rows", torch.zeros(()))

    def support_linear(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The support's prototype head, its class means shrunk toward the source means once there is a prior."""
        centred, centre, counts = class_means(features, labels, self.source_means.shape[0])
        tau = float(self.prior_rows)
        if tau > 0:
            counts = counts.unsqueeze(1)
            centred = (tau * self.source_means + counts * centred) / (tau + counts)
        return linear_from_means(centred, centre)

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

    def start(self, model: nn.Module, fast: dict[str, torch.Tensor],
              support) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``fast`` with its head moved by s · the support's prototype head (less the folded source
        offset: θ_head + s·P_support, the support's means shrunk toward the sources'), and that prototype head."""
        weight, bias = self.support_linear(self.features(model, fast, support), support.labels)
        names = [n for n in fast if is_head_tensor(n)]
        prototype = {n: (weight if n.endswith(".weight") else bias) for n in names}
        scale = self.log_scale.detach().exp()
        moved = {n: (w + (scale * prototype[n] - self.source_offset(n)).to(w.dtype)) if n in prototype else w
                 for n, w in fast.items()}
        return moved, prototype

    def scale_gradient(self, query_grads: dict[str, torch.Tensor], prototype: dict[str, torch.Tensor]) -> torch.Tensor:
        """∂L_Q/∂log s = s · Σ ⟨∇_head L_Q(φ_T), prototype head⟩ (first order)."""
        inner = sum((query_grads[n].float() * p).sum() for n, p in prototype.items() if query_grads.get(n) is not None)
        return self.log_scale.detach().exp() * inner
