"""The prototype head as a component: its slow scale s (and the folded source offset) at ``model.prototype_mix``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...meta.source_prototypes import fold_source_prototypes
from ..prototype_head import SOURCE_KEYS, PrototypeMix
from .base import Component, MetaTrainingRun


class PrototypeHead(Component):
    """Inner loops start the head from the support's class prototypes (`xmeta.modeling.prototype_head`)."""

    name = "prototype_head"
    flag = "prototype_head"
    attribute = "prototype_mix"
    optional_state_keys = SOURCE_KEYS  # folders written before the fold: zero offset, no prior

    @classmethod
    def build(cls, model, network) -> PrototypeHead:
        config = model.config
        mix = PrototypeMix(config.num_labels, network.classifier.in_features, meta_head=config.prototype_meta_head,
                           prior=config.prototype_prior)
        model.prototype_mix = mix
        return cls(mix)

    def after_meta_training(self, model, run: MetaTrainingRun) -> None:
        """θ alone predicts at K=0: the source prototypes are folded into its head (`fold_source_prototypes`);
        their per-language class means are the adapt-step selection's leave-one-out priors."""
        run.language_means = fold_source_prototypes(model, run.tasks, seed=run.seed).language_means

    def param_groups(self, args: Any) -> list[dict]:
        return [{"params": list(self.module.parameters()), "lr": args.inner_rate_lr}]

    def start_inner_loop(self, model, fast: dict[str, torch.Tensor], support) -> tuple[dict[str, torch.Tensor], Any]:
        """The head moved by s · the support's prototype head; that prototype head is the record."""
        return self.module.start(model, fast, support)

    def replaces(self, name: str) -> bool:
        return self.module.replaces(name)

    def start_gradients(self, query_grads: dict[str, torch.Tensor], record) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return [(self.module.log_scale, self.module.scale_gradient(query_grads, record))]
