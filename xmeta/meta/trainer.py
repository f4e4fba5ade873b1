"""The outer loop: meta-batches of language episodes, AdamW on θ, dev scores and checkpoints.

Model selection: every ``eval_every`` steps (and at the last step) θ is scored on fixed dev
episodes (source languages' dev rows, each leave-one-language-out like training, batches built
for the current weights, everything in eval mode); the best-scoring θ is kept and restored when
training ends, as the B1 baseline does with its own dev score. Checkpoints carry the best θ too.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from statistics import mean

import numpy as np
import torch
from tqdm.auto import tqdm

from ..arguments import require_number
from ..data import Episode, EpisodeSampler
from ..distributed import Processes
from ..errors import ArgumentError, TrainingInterrupted, XMetaError
from ..modeling import components as registry
from .batch import DEFAULT_CHUNK, LabelledBatch
from .checkpoint import BestState, StepLog, load_checkpoint, save_checkpoint
from .fomaml import FirstOrderMAML, InnerLoop, query_accuracy


@dataclass
class BaseMetaTrainingArguments:
    """How to meta-train (the command line's ``meta-train`` flags); `MetaTrainingArguments` adds each
    registered component's training flags."""

    # 80: the best xmeta point of both tasks' budget curves (x2 of the benchmark's 40; x4 is lower on both, README)
    steps: int = field(default=80, metadata={"help": "outer (meta) steps"})
    meta_batch: int = field(default=4, metadata={"help": "languages per meta-step"})
    n_way: int = field(default=0, metadata={"help": "classes per episode (0: every class with enough examples)"})
    k_shot: int = field(default=4, metadata={"help": "support examples per class"})
    min_k_shot: int = field(default=0, metadata={
        "help": "with 1..k_shot-1: each training episode draws its support examples per class from min_k_shot..k_shot "
                "(variable-shot episodes; dev episodes keep k_shot); 0: every episode has k_shot"})
    k_query: int = field(default=4, metadata={"help": "query examples per class"})
    # on: never lower at K>=4 on either task's benchmark (two training seeds), Cherokee K=16 0.41 -> 0.48 (README)
    romanized_copies: Literal["on", "off"] = field(default="on", metadata={
        "help": "on: every source language in a script other than Latin also meta-trains as <lang>-Latn, its texts "
                "romanised (uroman), so θ learns to adapt to what --romanize makes of a poorly covered target"})
    inner_lr: float = field(default=0.05, metadata={"help": "inner-loop SGD learning rate"})
    inner_steps: int = field(default=3, metadata={"help": "inner-loop SGD steps"})
    head_lr_scale: float = field(default=1.0, metadata={"help": "the head's inner-loop rate is this times --inner_lr"})
    outer_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate on θ"})
    inner_rate_lr: float = field(default=1e-2, metadata={
        "help": "AdamW learning rate of the learned inner rates' log-scales (with --learn_inner_lr; at the θ rate "
                "1e-3 they moved 4%% in 40 meta-steps) and of the prototype head's scale"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "meta-gradient clipping"})
    eval_every: int = field(default=25, metadata={"help": "dev-episode score every N steps (0: never)"})
    dev_episodes: int = field(default=8, metadata={"help": "dev episodes per evaluation"})
    checkpoint_every: int = field(default=0, metadata={"help": "save the model to OUT.checkpoint every N steps (0: never)"})
    seed: int = field(default=0, metadata={"help": "seed for episodes and initialisation"})
    chunk_size: int = field(default=DEFAULT_CHUNK, metadata={
        "help": "texts per length-sorted, separately padded chunk of an episode (speed only: same loss)"})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast of the forward passes on CUDA (no effect on CPU)"})
    init: Literal["none", "joint"] = field(default="none", metadata={
        "help": "joint: first train θ on every source row like the benchmark's B1 (AdamW, best on source dev), "
                "then meta-train from it"})
    joint_steps: int = field(default=100, metadata={"help": "AdamW steps of batch 32 of the --init joint stage"})

    def validate(self) -> None:
        positive = {"steps": self.steps, "meta_batch": self.meta_batch, "k_shot": self.k_shot,
                    "k_query": self.k_query, "inner_steps": self.inner_steps, "dev_episodes": self.dev_episodes,
                    "chunk_size": self.chunk_size, "joint_steps": self.joint_steps}
        for name, value in positive.items():
            if value < 1:
                raise ArgumentError(f"--{name} must be at least 1 (got {value})")
        if not 0 <= self.min_k_shot <= self.k_shot:
            raise ArgumentError(f"--min_k_shot must be between 0 and --k_shot {self.k_shot} (got {self.min_k_shot})")
        for name, value in {"inner_lr": self.inner_lr, "outer_lr": self.outer_lr, "inner_rate_lr": self.inner_rate_lr,
                            "head_lr_scale": self.head_lr_scale}.items():
            require_number(name, value)
        for name, value in {"n_way": self.n_way, "eval_every": self.eval_every,
                            "checkpoint_every": self.checkpoint_every, "weight_decay": self.weight_decay}.items():
            if value < 0:
                raise ArgumentError(f"--{name} must not be negative (got {value})")


def meta_training_arguments() -> type:
    """`BaseMetaTrainingArguments` with the training flags of every component registered now."""
    return registry.with_component_flags("MetaTrainingArguments", BaseMetaTrainingArguments, "training", __name__)


MetaTrainingArguments = meta_training_arguments()


def episode_batches(model, episode: Episode, chunk_size: int) -> tuple[str, LabelledBatch, LabelledBatch]:
    support = LabelledBatch.build(model, episode.support_texts, episode.support_labels, chunk_size, episode.lang)
    query = LabelledBatch.build(model, episode.query_texts, episode.query_labels, chunk_size, episode.lang)
    return episode.lang, support, query


def parameter_groups(model, trainable: list[torch.nn.Parameter], args: MetaTrainingArguments) -> list[dict]:
    """AdamW groups: θ at the outer rate, then each component's groups at their own rates (``args``),
    in registry order; a trainable tensor no component claims trains with θ."""
    wanted = {id(p) for p in trainable}
    own = [{**group, "params": [p for p in group["params"] if id(p) in wanted]}
           for component in model.components.values() for group in component.param_groups(args)]
    claimed = {id(p) for group in own for p in group["params"]}
    return [{"params": [p for p in trainable if id(p) not in claimed]}] + [group for group in own if group["params"]]


def episode_seed(seed: int, step: int, index: int) -> int:
    """The torch seed (head dropout) of episode ``index`` of ``step``: the same in whichever process
    runs it and whether or not the run was resumed, so sharding and resuming change no number."""
    return int(np.random.SeedSequence([seed, step, index]).generate_state(1)[0])


class MetaTrainer:
    """Runs first-order MAML over ``train`` languages and scores held-out ``dev`` episodes."""

    def __init__(self, model, train_sampler: EpisodeSampler, args: MetaTrainingArguments,
                 dev_sampler: EpisodeSampler | None = None, processes: Processes | None = None) -> None:
        args.validate()
        self.model = model
        self.args = args
        self.train_sampler = train_sampler
        self.processes = processes or Processes()
        model.to(self.processes.device)
        for component in registry.COMPONENTS:
            component.check_training(model.config, args)
        self.inner = InnerLoop.meta_learned(model, lr=args.inner_lr, steps=args.inner_steps,
                                            head_lr_scale=args.head_lr_scale)
        self.bf16 = args.bf16 and self.processes.device.type == "cuda"  # autocast; CPU runs stay float32
        self.maml = FirstOrderMAML(model, self.inner)
        scores_dev = dev_sampler is not None and self.processes.is_main
        dev_episodes = min(args.dev_episodes, len(dev_sampler.langs)) if scores_dev else 0  # fewer languages: shrink to fit
        self.dev = dev_sampler.sample_meta_batch(dev_episodes) if scores_dev else []  # batches: at each score
        trainable = [p for p in model.parameters() if p.requires_grad]
        with torch.no_grad():
            self.processes.broadcast_(trainable)
        self.optimizer = torch.optim.AdamW(parameter_groups(model, trainable, args), lr=args.outer_lr,
                                           weight_decay=args.weight_decay)
        model.config.inner_lr = args.inner_lr
        model.config.inner_steps = args.inner_steps
        model.config.head_lr_scale = args.head_lr_scale
        torch.manual_seed(args.seed)
        self.completed = 0  # finished outer steps
        self.history: list[StepLog] = []
        self.stop_signal: int | None = None  # set by SIGINT/SIGTERM in this process
        self.stop_requested = False  # set when any process was signalled (agreed in the all-reduce)
        self.last_checkpoint: tuple[Path, int] | None = None
        self.best: BestState | None = None  # the best-scoring θ so far (model selection on dev)
        self.warm_start: dict | None = None  # the record of a stage that trained θ before meta-training (--init)

    def named_trainable(self) -> dict[str, torch.nn.Parameter]:
        """θ: every trainable tensor (what the optimiser updates and a checkpoint holds)."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def checkpoint(self, directory: Path) -> None:
        """Write the full training state (main process only; see `xmeta.meta.checkpoint`)."""
        if self.processes.is_main:
            save_checkpoint(directory, self)
        self.last_checkpoint = (directory, self.completed)

    def resume(self, directory: Path) -> None:
        """Continue from a checkpoint: parameters, AdamW, sampler, RNGs, step and history."""
        load_checkpoint(directory, self)
        self.last_checkpoint = (directory, self.completed)

    def dev_accuracy(self) -> float:
        """Query accuracy after the inner loop on the fixed dev episodes (no update to θ): eval mode
        (no dropout, no random numbers drawn), each episode without its own language's bank slot,
        batches built now (a trained meta-embedding changes the cached lower layers)."""
        scores = []
        with self.model.evaluating(None):
            for episode in self.dev:
                lang, support, query = episode_batches(self.model, episode, self.args.chunk_size)
                with self.autocast(), self.model.transferring_into(lang):
                    scores.append(query_accuracy(self.model, self.inner, support, query))
        return mean(scores) if scores else float("nan")

    def select(self, step: int, score: float) -> None:
        """Keep θ if ``score`` is the best dev score so far."""
        if self.best is None or score > self.best.score:
            self.best = BestState(step, score, {n: p.detach().clone() for n, p in self.named_trainable().items()})

    def restore_best(self) -> None:
        """Put the best-scoring θ back (nothing to do without dev scores)."""
        if self.best is not None:
            with torch.no_grad():
                for name, p in self.named_trainable().items():
                    p.copy_(self.best.weights[name])

    @contextmanager
    def meta_step(self) -> Iterator[None]:
        """Around one outer step's episodes, each component's own (e.g. source attention's bank stays frozen)."""
        with ExitStack() as stack:
            for component in self.model.components.values():
                stack.enter_context(component.meta_step())
            yield

    def autocast(self) -> torch.autocast:
        """bf16 autocast of the forward passes when ``self.bf16`` (gradients and θ stay float32)."""
        return torch.autocast(self.processes.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def step(self) -> tuple[float, float]:
        """One outer step on this process's share of the meta-batch; mean query loss and accuracy
        of the whole meta-batch. Every process takes the same step (the gradients are summed)."""
        episodes = self.train_sampler.sample_meta_batch(self.args.meta_batch)
        step = self.completed + 1
        self.optimizer.zero_grad(set_to_none=True)
        for component in self.model.components.values():
            component.outer_step(step, self.args.steps)
        results = []
        with self.meta_step(), self.autocast():
            for index, episode in self.processes.share(list(enumerate(episodes))):
                torch.manual_seed(episode_seed(self.args.seed, step, index))
                results += self.maml.meta_gradient([episode_batches(self.model, episode, self.args.chunk_size)], total=len(episodes))
        params = list(self.named_trainable().values())
        loss, accuracy, stop = self.processes.sum_gradients(
            params, [sum(r.query_loss for r in results), sum(r.query_accuracy for r in results), float(self.stop_signal or 0)])
        loss, accuracy = loss / len(episodes), accuracy / len(episodes)
        for component in self.model.components.values():
            component.synchronise(self.processes.sum_)
        if not math.isfinite(loss):
            kept = (f"last good checkpoint: {self.last_checkpoint[0]} (step {self.last_checkpoint[1]})"
                    if self.last_checkpoint else "no checkpoint was written (see --checkpoint_every)")
            raise XMetaError(f"meta-training stopped at step {step}: query loss became {loss} "
                             f"(lower --outer_lr or --inner_lr); {kept}")
        torch.nn.utils.clip_grad_norm_(params, self.args.max_grad_norm)
        self.optimizer.step()
        self.completed = step
        self.stop_requested = stop > 0
        return loss, accuracy

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM let the current step finish (then `train` checkpoints and stops); a second one stops at once."""
        def request_stop(signum: int, _frame: object) -> None:
            if self.stop_signal is not None:
                raise KeyboardInterrupt
            self.stop_signal = signum

        watched = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
        previous = {sig: signal.signal(sig, request_stop) for sig in watched}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def train(self, checkpoint_dir: Path | None = None) -> list[StepLog]:
        """Run the remaining steps; checkpoints go to ``checkpoint_dir`` every ``checkpoint_every``
        steps and when a signal stops the run (raised as `TrainingInterrupted`)."""
        self.model.train()
        bar = tqdm(range(self.completed + 1, self.args.steps + 1), desc="meta-train", unit="step", dynamic_ncols=True,
                   initial=self.completed, total=self.args.steps, disable=not self.processes.is_main)
        with self.stop_on_signals():
            for step in bar:
                start = time.perf_counter()
                loss, acc = self.step()
                log = StepLog(step, loss, acc, time.perf_counter() - start)
                if self.dev and self.args.eval_every and (step % self.args.eval_every == 0 or step == self.args.steps):
                    log.dev_accuracy = self.dev_accuracy()
                    self.select(step, log.dev_accuracy)
                self.history.append(log)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}",
                                dev=f"{log.dev_accuracy:.2f}" if log.dev_accuracy is not None else "-")
                due = self.args.checkpoint_every and step % self.args.checkpoint_every == 0
                if checkpoint_dir and (due or self.stop_requested):
                    self.checkpoint(checkpoint_dir)
                if self.stop_requested:
                    bar.close()
                    signum = self.stop_signal or signal.SIGTERM
                    saved = f"checkpoint {checkpoint_dir} (continue with --resume)" if checkpoint_dir else "no checkpoint"
                    raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name} after step {step}; {saved}", signum)
        self.restore_best()
        self.model.eval()
        return self.history
