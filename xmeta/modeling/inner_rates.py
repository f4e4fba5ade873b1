"""Learned inner-loop learning rates (first-order Meta-SGD): one rate per group of fast weights.

Groups are the adapted layers' LoRA A tensors, their LoRA B tensors (one group each per layer, all
target projections of that layer together) and the head (weight and bias): 2 × ``lora_layers`` + 1
rates, few enough to estimate from a meta-batch, but A and B move at the scales they need (B starts
at zero, A does not). A rate is stored as a log-scale s on the base rate, α_g = inner_lr · exp(s_g):
it stays positive, starts at ``inner_lr`` (s = 0), and AdamW's weight decay pulls it back towards
``inner_lr`` rather than towards 1. The rates are slow weights: they live outside the peft adapters,
so they are saved with θ (``inner_rates.log_scale`` in model.safetensors) and in checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..encoders import layer_index

HEAD_GROUP = "head"


def rate_group(name: str) -> str:
    """The group of a fast-weight name, whatever adapter (language) it belongs to."""
    for kind in ("lora_A", "lora_B"):
        if f".{kind}." in name:
            layer = layer_index(name)
            return kind if layer is None else f"layer{layer}.{kind}"
    return HEAD_GROUP


class InnerRates(nn.Module):
    """The per-group log-scales s (a parameter) and the fast-weight → group lookup."""

    def __init__(self, fast_names: Iterable[str]) -> None:
        super().__init__()
        self.groups = sorted({rate_group(n) for n in fast_names})
        self._index = {g: i for i, g in enumerate(self.groups)}
        self.log_scale = nn.Parameter(torch.zeros(len(self.groups)))

    def index(self, name: str) -> int:
        """Position of a fast weight's group in ``log_scale``."""
        return self._index[rate_group(name)]

    def rates(self, base_lr: float) -> torch.Tensor:
        """α = base_lr · exp(s), one per group (with s's graph, for the chain rule's dα/ds = α)."""
        return base_lr * self.log_scale.exp()

    def as_dict(self, base_lr: float) -> dict[str, float]:
        """Group name → current rate (for logs, model cards and reports)."""
        return dict(zip(self.groups, self.rates(base_lr).tolist()))
