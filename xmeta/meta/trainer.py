"""The outer loop: meta-batches of language episodes, AdamW on θ, dev scores and checkpoints."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import torch
from tqdm.auto import tqdm

from ..data import Episode, EpisodeSampler
from ..errors import ArgumentError, XMetaError
from .batch import LabelledBatch
from .fomaml import FirstOrderMAML, InnerLoop


@dataclass
class MetaTrainingArguments:
    """How to meta-train (the command line's ``meta-train`` flags)."""

    steps: int = field(default=100, metadata={"help": "outer (meta) steps"})
    meta_batch: int = field(default=4, metadata={"help": "languages per meta-step"})
    n_way: int = field(default=0, metadata={"help": "classes per episode (0: every class with enough examples)"})
    k_shot: int = field(default=4, metadata={"help": "support examples per class"})
    k_query: int = field(default=4, metadata={"help": "query examples per class"})
    inner_lr: float = field(default=0.05, metadata={"help": "inner-loop SGD learning rate"})
    inner_steps: int = field(default=3, metadata={"help": "inner-loop SGD steps"})
    outer_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate on θ"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "meta-gradient clipping"})
    eval_every: int = field(default=25, metadata={"help": "dev-episode score every N steps (0: never)"})
    dev_episodes: int = field(default=8, metadata={"help": "dev episodes per evaluation"})
    checkpoint_every: int = field(default=0, metadata={"help": "save the model to OUT.checkpoint every N steps (0: never)"})
    seed: int = field(default=0, metadata={"help": "seed for episodes and initialisation"})

    def validate(self) -> None:
        positive = {"steps": self.steps, "meta_batch": self.meta_batch, "k_shot": self.k_shot,
                    "k_query": self.k_query, "inner_steps": self.inner_steps, "dev_episodes": self.dev_episodes}
        for name, value in positive.items():
            if value < 1:
                raise ArgumentError(f"--{name} must be at least 1 (got {value})")
        for name, value in {"inner_lr": self.inner_lr, "outer_lr": self.outer_lr}.items():
            if not (value > 0 and math.isfinite(value)):
                raise ArgumentError(f"--{name} must be a positive number (got {value})")
        for name, value in {"n_way": self.n_way, "eval_every": self.eval_every,
                            "checkpoint_every": self.checkpoint_every, "weight_decay": self.weight_decay}.items():
            if value < 0:
                raise ArgumentError(f"--{name} must not be negative (got {value})")


@dataclass
class StepLog:
    step: int
    query_loss: float
    query_accuracy: float
    seconds: float
    dev_accuracy: float | None = None


def episode_batches(model, episode: Episode) -> tuple[str, LabelledBatch, LabelledBatch]:
    support = LabelledBatch.build(model, episode.support_texts, episode.support_labels)
    query = LabelledBatch.build(model, episode.query_texts, episode.query_labels)
    return episode.lang, support, query


class MetaTrainer:
    """Runs first-order MAML over ``train`` languages and scores held-out ``dev`` episodes."""

    def __init__(self, model, train_sampler: EpisodeSampler, args: MetaTrainingArguments,
                 dev_sampler: EpisodeSampler | None = None) -> None:
        args.validate()
        self.model = model
        self.args = args
        self.train_sampler = train_sampler
        self.inner = InnerLoop(lr=args.inner_lr, steps=args.inner_steps)
        self.maml = FirstOrderMAML(model, self.inner)
        self.dev = [episode_batches(model, ep) for ep in dev_sampler.sample_meta_batch(args.dev_episodes)] if dev_sampler else []
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=args.outer_lr, weight_decay=args.weight_decay)
        model.config.inner_lr = args.inner_lr
        model.config.inner_steps = args.inner_steps

    def dev_accuracy(self) -> float:
        """Query accuracy after the inner loop on the fixed dev episodes (no update to θ)."""
        from .fomaml import batch_loss

        scores = []
        for _, support, query in self.dev:
            fast = self.inner.run(self.model, support)
            with torch.no_grad():
                _, logits = batch_loss(self.model, fast, query)
            scores.append((logits.argmax(-1) == query.labels).float().mean().item())
        return mean(scores) if scores else float("nan")

    def step(self) -> tuple[float, float]:
        episodes = [episode_batches(self.model, ep) for ep in self.train_sampler.sample_meta_batch(self.args.meta_batch)]
        self.optimizer.zero_grad(set_to_none=True)
        results = self.maml.meta_gradient(episodes)
        loss = mean(r.query_loss for r in results)
        if not math.isfinite(loss):
            raise XMetaError(f"meta-training stopped: query loss became {loss} (lower --outer_lr or --inner_lr)")
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.args.max_grad_norm)
        self.optimizer.step()
        return loss, mean(r.query_accuracy for r in results)

    def train(self, checkpoint_dir: Path | None = None) -> list[StepLog]:
        torch.manual_seed(self.args.seed)
        self.model.train()
        history: list[StepLog] = []
        bar = tqdm(range(1, self.args.steps + 1), desc="meta-train", unit="step", dynamic_ncols=True)
        for step in bar:
            start = time.perf_counter()
            loss, acc = self.step()
            log = StepLog(step, loss, acc, time.perf_counter() - start)
            if self.dev and self.args.eval_every and (step % self.args.eval_every == 0 or step == self.args.steps):
                log.dev_accuracy = self.dev_accuracy()
            history.append(log)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}",
                            dev=f"{log.dev_accuracy:.2f}" if log.dev_accuracy is not None else "-")
            if checkpoint_dir and self.args.checkpoint_every and step % self.args.checkpoint_every == 0:
                self.model.save_pretrained(checkpoint_dir, overwrite=True)
        self.model.eval()
        return history
