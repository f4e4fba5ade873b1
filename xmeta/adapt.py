"""Few-shot adaptation to a new language: the meta-learned inner loop, run longer, on the user's examples."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .errors import ArgumentError, DataError
from .meta.batch import LabelledBatch
from .meta.fomaml import InnerLoop, batch_loss


@dataclass
class AdaptationResult:
    lang: str
    examples: int
    steps: int
    seconds: float
    support_loss: float


def _as_pairs(examples: Sequence[tuple[str, str]] | Sequence[Mapping]) -> list[tuple[str, str]]:
    pairs = []
    for i, ex in enumerate(examples):
        if isinstance(ex, Mapping):
            if "text" not in ex or "label" not in ex:
                raise DataError(f"example {i}: needs 'text' and 'label' (got keys {sorted(ex)})")
            pairs.append((str(ex["text"]), str(ex["label"])))
        else:
            text, label = ex
            pairs.append((str(text), str(label)))
    return pairs


def adapt_language(
    model,
    examples: Sequence[tuple[str, str]] | Sequence[Mapping],
    lang: str,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
) -> AdaptationResult:
    """Copy θ into a new adapter for ``lang`` and fine-tune it on ``examples`` (text, label name).

    Uses the same SGD inner loop the model was meta-trained with (same learning rate), for
    ``config.adapt_steps`` steps unless told otherwise: θ was learned to be a good start for
    exactly this procedure.
    """
    pairs = _as_pairs(examples)
    if not pairs:
        raise DataError(f"adapt {lang}: no examples given")
    unknown = sorted({label for _, label in pairs} - set(model.config.label2id))
    if unknown:
        raise DataError(f"adapt {lang}: label {unknown[0]!r} is not one of the model's labels ({', '.join(model.config.labels)})")
    steps = model.config.adapt_steps if steps is None else steps
    lr = model.config.inner_lr if lr is None else lr
    if steps < 1:
        raise ArgumentError(f"adapt: --steps must be at least 1 (got {steps})")
    if not lr > 0:
        raise ArgumentError(f"adapt: --lr must be positive (got {lr})")
    torch.manual_seed(seed)
    start = time.perf_counter()
    model.start_language(lang)
    model.train()
    batch = LabelledBatch.build(model, [t for t, _ in pairs], [model.config.label2id[label] for _, label in pairs])
    fast = InnerLoop(lr=lr, steps=steps).run(model, batch)
    params = model.fast_parameters()
    with torch.no_grad():
        for name, value in fast.items():
            params[name].copy_(value)
        model.eval()
        loss, _ = batch_loss(model, {}, batch)
    return AdaptationResult(lang, len(pairs), steps, time.perf_counter() - start, loss.item())
