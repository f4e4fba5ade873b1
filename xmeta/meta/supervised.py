"""Plain supervised LoRA training with model selection: the benchmark's B1 baseline and the joint
warm start of meta-training (`xmeta.meta.warm_start`) share it, so both train exactly alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .batch import LabelledBatch
from .fomaml import batch_loss


@torch.inference_mode()
def score_batch(model, batch: LabelledBatch, adapter: str) -> dict[str, float]:
    """Accuracy and macro-F1 of ``adapter`` on a prepared batch (built once, scored many times)."""
    from ..evaluation.metrics import classification_scores  # evaluation builds on meta, not the other way round

    previous, was_training = model.active_language, model.training
    model.use_language(adapter)
    model.eval()
    try:
        _, logits = batch_loss(model, {}, batch)
    finally:
        model.use_language(previous)
        model.train(was_training)
    return classification_scores(batch.labels.tolist(), logits.argmax(-1).tolist())


@dataclass
class FineTuneResult:
    steps: int
    seconds: float
    best_step: int
    best_dev: float | None


def supervised_finetune(
    model,
    texts: Sequence[str],
    labels: Sequence[int],
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    dev: Callable[[], float] | None = None,
    eval_every: int = 0,
    desc: str = "fine-tune",
) -> FineTuneResult:
    """Plain supervised training of the active adapter (LoRA + head) with AdamW.

    Batches are drawn without replacement, epoch after epoch, in a seeded order. With ``dev``,
    the adapter is scored every ``eval_every`` steps and the best state is kept (model selection
    on held-out data the caller chose: source languages, never the target's test rows).
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    order: list[int] = []
    best = (float("-inf"), 0, None)
    start = time.perf_counter()
    model.train()
    for step in tqdm(range(1, steps + 1), desc=desc, unit="step", dynamic_ncols=True, leave=False):
        if len(order) < batch_size:
            order += torch.randperm(len(texts), generator=generator).tolist()
        rows, order = order[:batch_size], order[batch_size:]
        batch = LabelledBatch.build(model, [texts[i] for i in rows], [labels[i] for i in rows])
        optimizer.zero_grad(set_to_none=True)
        loss, _ = batch_loss(model, {}, batch)
        loss.backward()
        optimizer.step()
        if dev is not None and eval_every and (step % eval_every == 0 or step == steps):
            score = dev()
            model.train()
            if score > best[0]:
                best = (score, step, {n: p.detach().clone() for n, p in params.items()})
    if best[2] is not None:
        with torch.no_grad():
            for name, value in best[2].items():
                params[name].copy_(value)
    model.eval()
    return FineTuneResult(steps, time.perf_counter() - start, best[1] or steps,
                          None if best[2] is None else best[0])
