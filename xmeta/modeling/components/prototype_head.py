"""The prototype head as a component: its slow scale s (and the folded source offset) at ``model.prototype_mix``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ...errors import ArgumentError
from ...meta.source_prototypes import SOURCE_PROTOTYPE_ROWS, fold_source_prototypes
from ..prototype_head import SOURCE_KEYS, PrototypeMix
from .base import Component, ComponentFlags, MetaTrainingRun


@dataclass
class PrototypeHeadFlags(ComponentFlags):
    prototype_head: Literal["on", "off"] = field(
        default="on", metadata={"help": "every inner loop and adaptation starts the head from the support's class prototypes "
                                        "(after meta-training: shrunk toward the source languages'; off: plain FOMAML)"})
    meta_head: Literal["on", "off"] = field(
        default="off", metadata={"help": "with the prototype head: add the prototypes to a meta-learned head (a learned "
                                         "mix); off: they are the head, as in Proto-MAML"})
    prototype_prior: Literal["per_language", "sources"] = field(
        default="per_language", metadata={"help": "how far adaptation trusts the source prototypes over a language's "
                                                  "own examples: estimated per language from the examples' distance "
                                                  "to the source prototypes, or once from the sources' own scatter"})
    prior_within: Literal["support", "sources"] = field(
        default="support", metadata={"help": "the per-language prior's noise of one row: the support's own scatter "
                                             "around its class means (K=1: the sources' prior), or the sources'"})
    prototype_metric: Literal["sources", "euclidean"] = field(
        default="sources", metadata={"help": "the prototypes' distance after meta-training: under the source languages' "
                                             "within-class covariance (shrunk toward the identity by an amount chosen "
                                             "on the sources, one language held out at a time), or Euclidean"})
    prototype_centre: Literal["shrunk", "support"] = field(
        default="shrunk", metadata={"help": "a support's centre (its language's offset) after meta-training: its own mean "
                                            "shrunk toward the source languages' mean centre by how little it exceeds "
                                            "its sampling noise (James-Stein), or its own mean"})
    metric_selection: Literal["dev", "fold"] = field(
        default="dev", metadata={"help": "the rows a held-out source language scores the metric's shrinkage on: its "
                                         "dev rows (items no training row has; without dev rows, its fold rows) or "
                                         "its fold rows (on parallel data they name items the other sources' rows "
                                         "name too)"})
    prototype_source_rows: int = field(
        default=SOURCE_PROTOTYPE_ROWS, metadata={"help": "rows per class and source language read after meta-training "
                                                         "for the zero-shot prototypes, the prior and the metric "
                                                         "(tagging: sentences per language, times the tags)"})

    def validate(self) -> None:
        if self.prototype_source_rows < 1:
            raise ArgumentError(f"--prototype_source_rows must be at least 1 (got {self.prototype_source_rows})")

    def config_fields(self) -> dict[str, Any]:
        return {"prototype_head": self.prototype_head == "on", "prototype_meta_head": self.meta_head == "on",
                "prototype_prior": self.prototype_prior, "prototype_prior_within": self.prior_within,
                "prototype_metric": self.prototype_metric, "prototype_source_rows": self.prototype_source_rows,
                "prototype_centre": self.prototype_centre, "prototype_metric_selection": self.metric_selection}


class PrototypeHead(Component):
    """Inner loops start the head from the support's class prototypes (`xmeta.modeling.prototype_head`)."""

    name = "prototype_head"
    flag = "prototype_head"
    attribute = "prototype_mix"
    optional_state_keys = SOURCE_KEYS  # folders written before the fold: zero offset, no prior
    model_flags = PrototypeHeadFlags
    adapts_without_steps = True  # the prototypes alone

    @classmethod
    def build(cls, model, network) -> PrototypeHead:
        config = model.config
        mix = PrototypeMix(config.num_labels, network.classifier.in_features, meta_head=config.prototype_meta_head,
                           prior=config.prototype_prior, within=config.prototype_prior_within,
                           centre=config.prototype_centre)
        model.prototype_mix = mix
        return cls(mix)

    def after_meta_training(self, model, run: MetaTrainingRun) -> None:
        """θ alone predicts at K=0: the source prototypes are folded into its head (`fold_source_prototypes`);
        their per-language class means are the adapt-step selection's leave-one-out priors. The metric's
        choice is recorded in the trainer state."""
        fold = fold_source_prototypes(model, run.tasks, per_class=model.config.prototype_source_rows, seed=run.seed,
                                      dev_tasks=run.dev_tasks)
        run.language_means = fold.language_means
        model.trainer_state.source_rows = fold.rows
        if fold.metric is not None:
            model.trainer_state.prototype_metric = {str(a): round(s, 4) for a, s in fold.metric.scores.items()}
            print(f"prototype metric: the sources' covariance shrunk by {fold.metric.shrinkage} "
                  f"(held-out source accuracy {model.trainer_state.prototype_metric})")

    def param_groups(self, args: Any) -> list[dict]:
        return [{"params": list(self.module.parameters()), "lr": args.inner_rate_lr}]

    def start_inner_loop(self, model, fast: dict[str, torch.Tensor], support) -> tuple[dict[str, torch.Tensor], Any]:
        """The head moved by s · the support's prototype head; that prototype head is the record."""
        return self.module.start(model, fast, support)

    def replaces(self, name: str) -> bool:
        return self.module.replaces(name)

    def start_gradients(self, query_grads: dict[str, torch.Tensor], record) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return [(self.module.log_scale, self.module.scale_gradient(query_grads, record))]
