"""Learned inner rates as a component: their log-scales at ``model.inner_rates`` (`xmeta.modeling.inner_rates`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import ArgumentError
from ..inner_rates import InnerRates
from .base import Component, ComponentFlags


@dataclass
class InnerRateFlags(ComponentFlags):
    learn_inner_lr: bool = field(default=False, metadata={
        "help": "meta-learn one inner rate per group of fast weights (first-order Meta-SGD), starting at --inner_lr"})

    def config_fields(self) -> dict[str, Any]:
        return {"inner_lr_learned": self.learn_inner_lr}


class LearnedInnerRates(Component):
    """One meta-learned inner-loop rate per group of θ's fast weights (first-order Meta-SGD)."""

    name = "inner_rates"
    flag = "inner_lr_learned"
    attribute = "inner_rates"
    training_flags = InnerRateFlags

    @classmethod
    def build(cls, model, network) -> LearnedInnerRates:
        rates = InnerRates(model.fast_parameters())
        model.inner_rates = rates
        return cls(rates)

    @classmethod
    def check_training(cls, config, args: Any) -> None:
        if args.learn_inner_lr != bool(config.inner_lr_learned):
            raise ArgumentError(f"--learn_inner_lr is {args.learn_inner_lr} but the model was built with "
                                f"inner_lr_learned={config.inner_lr_learned}")

    def param_groups(self, args: Any) -> list[dict]:
        return [{"params": list(self.module.parameters()), "lr": args.inner_rate_lr}]
