"""Warm start (``meta-train --init joint``): θ first learns the task jointly on every source row,
exactly as the benchmark's B1 baseline does (`xmeta.meta.supervised`), then meta-training starts from it.

Plain joint training is a strong start for the shared features; meta-training then tunes θ for
few-shot adaptation. The stage's example passes are recorded (``warm_start`` in the model's
``trainer_state.json``) so a budget comparison can count them in xmeta's training cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..data import LanguageTask, TaggingTask
from .batch import LabelledBatch
from .supervised import score_batch, supervised_finetune

Task = LanguageTask | TaggingTask


@dataclass
class JointWarmStart:
    """How long the joint stage trains (AdamW, like B1), and how much dev data selects its best state."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    dev_per_class: int = 5  # shots per class (sentences, for tagging) of each source's dev rows
    seed: int = 0

    def run(self, model, tasks: Mapping[str, Task], dev_tasks: Mapping[str, Task] | None = None) -> dict:
        """Train θ (the active ``meta`` adapter and every trainable slow weight) on all of ``tasks``' rows;
        with ``dev_tasks``, keep the state with the best dev accuracy. Returns the stage's record."""
        texts = [t for task in tasks.values() for t in task.texts]
        labels = [y for task in tasks.values() for y in task.labels]
        dev = None
        if dev_tasks:
            rows = {lang: task.shots(min(self.dev_per_class, task.max_shots), self.seed) for lang, task in dev_tasks.items()}
            with torch.inference_mode():
                batch = LabelledBatch.build(model, [dev_tasks[lang].texts[i] for lang, ids in rows.items() for i in ids],
                                            [dev_tasks[lang].labels[i] for lang, ids in rows.items() for i in ids])
            adapter = model.active_language
            dev = lambda: score_batch(model, batch, adapter)["accuracy"]  # noqa: E731
        result = supervised_finetune(model, texts, labels, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                     seed=self.seed, dev=dev, eval_every=max(1, self.steps // 8), desc="joint warm start")
        model.train()
        return {"kind": "joint", "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                "example_passes": self.steps * self.batch_size, "best_step": result.best_step,
                "best_dev": result.best_dev, "seconds": round(result.seconds, 1)}
