"""First-order MAML the way research code writes it: a model copy per task, an optimiser on the copy.

Kept as the yardstick for `xmeta.meta.fomaml`: tests check that the functional meta-gradient equals
this one, and the speed benchmark times it as the baseline. It runs the plain way on purpose: one
padded batch through every layer at every step, no chunks, no cached lower layers, a
``copy.deepcopy`` of the whole model per task, ``torch.optim.SGD`` on the copy, and the copy's
query gradients added back onto θ's ``.grad``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

Examples = tuple[Sequence[str], Sequence[int]]


def padded_inputs(model, texts: Sequence[str], pad_to: int | None) -> dict[str, torch.Tensor]:
    """The model's own tokenisation, or (``pad_to``) every text padded to that many tokens."""
    if pad_to is None:
        return model.encode(texts)
    prefix = model.config.encoder_prefix
    return dict(model.tokenizer([prefix + t for t in texts], padding="max_length", truncation=True,
                                max_length=pad_to, return_tensors="pt"))


def reference_loss(model, examples: Examples, pad_to: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of one plain forward pass over ``examples``."""
    texts, labels = examples
    logits = model(**padded_inputs(model, texts, pad_to)).logits
    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(list(labels), device=logits.device))


def reference_inner_loop(model, support: Examples, lr: float | Mapping[str, float], steps: int,
                         pad_to: int | None = None) -> torch.nn.Module:
    """A copy of ``model`` after ``steps`` SGD steps on ``support``; ``lr`` may give each fast tensor its own rate."""
    clone = copy.deepcopy(model)
    fast = clone.fast_parameters()
    groups = [{"params": [p], "lr": lr[n] if isinstance(lr, Mapping) else lr} for n, p in fast.items()]
    opt = torch.optim.SGD(groups)
    for _ in range(steps):
        opt.zero_grad()
        reference_loss(clone, support, pad_to).backward()
        opt.step()
    opt.zero_grad()
    return clone


def reference_meta_gradient(model, episodes: Sequence[tuple[Examples, Examples]], lr: float, steps: int,
                            pad_to: int | None = None) -> None:
    """Add the meta-batch's mean first-order meta-gradient ∇φ L_Q(φ_T) onto θ's (fast weights') ``.grad``."""
    theta = model.fast_parameters()
    for support, query in episodes:
        clone = reference_inner_loop(model, support, lr, steps, pad_to)
        reference_loss(clone, query, pad_to).backward()
        for name, p in clone.fast_parameters().items():
            grad = p.grad / len(episodes)
            theta[name].grad = grad.clone() if theta[name].grad is None else theta[name].grad + grad
