"""First-order MAML with functional fast weights.

The fast weights φ are the active adapter's LoRA and head tensors. Each inner step evaluates the
model through ``torch.func.functional_call`` with φ substituted and takes ``torch.autograd.grad``
with respect to φ only: no module copies, and no graph is kept from one step to the next (which
is exactly the first-order approximation). The meta-gradient of a language is the query-loss
gradient at the adapted φ_T, applied to θ; every other trainable tensor (slow weights) gets its
ordinary query-loss gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.func import functional_call

from .batch import LabelledBatch

FastWeights = dict[str, torch.Tensor]


def batch_loss(model: torch.nn.Module, weights: FastWeights, batch: LabelledBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and logits (in chunk order) of ``model`` run with ``weights`` in place of its own."""
    logits = torch.cat([functional_call(model, weights, args=(), kwargs=inputs).logits for inputs, _ in batch.chunks])
    return torch.nn.functional.cross_entropy(logits, batch.labels), logits


@dataclass
class InnerLoop:
    """T plain SGD steps on a support set, starting from the model's current fast weights."""

    lr: float
    steps: int

    def run(self, model: torch.nn.Module, support: LabelledBatch, start: FastWeights | None = None) -> FastWeights:
        fast = {n: p.detach() for n, p in (start or model.fast_parameters()).items()}
        for _ in range(self.steps):
            fast = {n: w.requires_grad_(True) for n, w in fast.items()}
            loss, _ = batch_loss(model, fast, support)
            grads = torch.autograd.grad(loss, list(fast.values()))
            fast = {n: (w - self.lr * g).detach() for (n, w), g in zip(fast.items(), grads)}
        return fast


@dataclass
class EpisodeResult:
    lang: str
    query_loss: float
    query_accuracy: float


class FirstOrderMAML:
    """Accumulates the averaged first-order meta-gradient of a meta-batch into ``.grad``."""

    def __init__(self, model: torch.nn.Module, inner: InnerLoop) -> None:
        self.model = model
        self.inner = inner

    def meta_gradient(self, episodes: Sequence[tuple[str, LabelledBatch, LabelledBatch]],
                      total: int | None = None) -> list[EpisodeResult]:
        """Add ∇φ L_Q(φ_T) (fast) and ∇ L_Q (slow) / ``total`` into the parameters' ``.grad``.

        ``total`` (default ``len(episodes)``) is the whole meta-batch's size when ``episodes`` is
        only this process's share of it, so that the sum over processes is the mean."""
        theta = self.model.fast_parameters()
        slow = {n: p for n, p in self.model.named_parameters() if p.requires_grad and n not in theta}
        results = []
        for lang, support, query in episodes:
            with self.model.transferring_into(lang):  # leave-one-language-out for source attention
                fast = {n: w.requires_grad_(True) for n, w in self.inner.run(self.model, support).items()}
                loss, logits = batch_loss(self.model, fast, query)
                targets = list(theta.values()) + list(slow.values())
                grads = torch.autograd.grad(loss, list(fast.values()) + list(slow.values()), allow_unused=True)
            self.model.remember_source(lang, fast)
            for param, grad in zip(targets, grads):
                if grad is None:
                    continue
                grad = grad / (total or len(episodes))
                param.grad = grad.clone() if param.grad is None else param.grad + grad
            accuracy = (logits.argmax(-1) == query.labels).float().mean().item()
            results.append(EpisodeResult(lang, loss.item(), accuracy))
        return results
