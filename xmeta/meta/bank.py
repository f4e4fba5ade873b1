"""Filling and finalising the source-language adapter bank of source attention.

During meta-training every episode's inner-loop result is blended into its language's bank slot
(`FirstOrderMAML` calls ``model.remember_source``). At the end each slot is replaced by a longer,
less noisy adaptation from the final θ, so the bank matches the θ it will be used with.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tqdm.auto import tqdm

from ..data import LanguageTask, TaggingTask
from .batch import LabelledBatch
from .fomaml import InnerLoop


def finalize_bank(model, tasks: Mapping[str, LanguageTask | TaggingTask], shots: int, steps: int, seed: int = 0) -> None:
    """Each source slot ← its language's adapter after ``steps`` inner steps on a ``shots``-shot set
    (per class, or sentences for tagging; fewer where the language has fewer)."""
    inner = InnerLoop.meta_learned(model, lr=model.config.inner_lr, steps=steps, head_lr_scale=model.config.head_lr_scale)
    model.train()
    for lang in tqdm(model.source_transfer.bank.languages, desc="finalise source bank", unit="lang", dynamic_ncols=True):
        task = tasks[lang]
        ids = task.shots(min(shots, task.max_shots), seed)
        batch = LabelledBatch.build(model, [task.texts[i] for i in ids], [task.labels[i] for i in ids], language=lang)
        torch.manual_seed(seed)
        with model.transferring_into(lang):
            fast = inner.run(model, batch)
        model.remember_source(lang, fast, momentum=1.0)
    model.eval()
