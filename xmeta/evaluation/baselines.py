"""What a careful practitioner would do without xmeta: the benchmark's baselines.

- supervised LoRA fine-tuning (joint training on the sources, the oracle on all target rows),
  with AdamW and model selection on held-out source data;
- a frozen-encoder probe: logistic regression on mean-pooled encoder features.

Both run on the same encoder, adapters and batching as xmeta itself, so differences in the
benchmark come from the method, not from the plumbing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ..data.collate import encode_texts
from ..meta.batch import LabelledBatch
from ..meta.fomaml import batch_loss
from ..modeling.pooling import mean_pool
from .metrics import classification_scores


@torch.inference_mode()
def score_batch(model, batch: LabelledBatch, adapter: str) -> dict[str, float]:
    """Accuracy and macro-F1 of ``adapter`` on a prepared batch (built once, scored many times)."""
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


class FrozenEncoderProbe:
    """Logistic regression on the frozen encoder's mean-pooled output (features cached per text)."""

    def __init__(self, encoder, tokenizer, prefix: str, max_length: int = 64, batch_size: int = 64) -> None:
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.max_length = max_length
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    @torch.inference_mode()
    def features(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths pad little
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i : i + self.batch_size]
            inputs = encode_texts(self.tokenizer, chunk, self.prefix, self.max_length)
            hidden = self.encoder(**inputs).last_hidden_state
            for text, vector in zip(chunk, mean_pool(hidden, inputs["attention_mask"]).numpy()):
                self._cache[text] = vector
        return np.stack([self._cache[t] for t in texts])

    @staticmethod
    def fit(x: np.ndarray, y: Sequence[int], c: float, sample_weight: np.ndarray | None = None):
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        return classifier.fit(x, np.asarray(y), logisticregression__sample_weight=sample_weight)

    @staticmethod
    def score(classifier, x: np.ndarray, y: Sequence[int]) -> dict[str, float]:
        return classification_scores(list(y), classifier.predict(x).tolist())
