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
        """Tokenise once, then cut length-sorted chunks trimmed to their own longest text."""
        full = {name: tensor.to(model.device) for name, tensor in model.encode(texts).items()}
        lengths = full["attention_mask"].sum(1)
        trim = model.tokenizer.padding_side == "right"
        order = torch.argsort(lengths, stable=True)
        label_tensor = torch.as_tensor(list(labels), dtype=torch.long, device=model.device)
        chunks = []
        for rows in order.split(chunk_size):
            width = int(lengths[rows].max()) if trim else full["input_ids"].shape[1]
            inputs = {name: tensor[rows, :width] for name, tensor in full.items()}
            chunks.append((model.prepare_for_repeated_passes(inputs), label_tensor[rows]))
        return cls(chunks)

    @property
    def labels(self) -> torch.Tensor:
        """Labels in chunk order (the order of the logits `batch_loss` returns)."""
        return torch.cat([labels for _, labels in self.chunks])

    def __len__(self) -> int:
        return sum(int(labels.shape[0]) for _, labels in self.chunks)
