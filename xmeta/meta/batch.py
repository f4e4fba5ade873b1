"""A tokenised labelled batch: what one inner step or one query evaluation consumes.

Texts are sorted by length and cut into chunks that are padded separately: CLDR names vary from
10 to 70 tokens, so one padded rectangle wastes about half its compute on padding. Chunks change
the arithmetic order of the loss sum, not its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

DEFAULT_CHUNK = 16


@dataclass
class LabelledBatch:
    """Model inputs plus integer labels, built once per episode and reused by every inner step."""

    chunks: list[tuple[dict[str, torch.Tensor], torch.Tensor]]

    @classmethod
    def build(cls, model, texts: Sequence[str], labels: Sequence[int], chunk_size: int = DEFAULT_CHUNK) -> LabelledBatch:
        lengths = [len(ids) for ids in model.tokenizer(list(texts), truncation=True, max_length=model.config.max_length)["input_ids"]]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        chunks = []
        for start in range(0, len(order), chunk_size):
            rows = order[start : start + chunk_size]
            inputs = model.encode_for_training([texts[i] for i in rows])
            chunks.append((inputs, torch.as_tensor([labels[i] for i in rows], dtype=torch.long)))
        return cls(chunks)

    @property
    def labels(self) -> torch.Tensor:
        """Labels in chunk order (the order of the logits `batch_loss` returns)."""
        return torch.cat([labels for _, labels in self.chunks])

    def __len__(self) -> int:
        return sum(int(labels.shape[0]) for _, labels in self.chunks)
