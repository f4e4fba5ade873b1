"""A tokenised labelled batch: what one inner step or one query evaluation consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class LabelledBatch:
    """Model inputs plus integer labels, built once per episode and reused by every inner step."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor

    @classmethod
    def build(cls, model, texts: Sequence[str], labels: Sequence[int]) -> LabelledBatch:
        return cls(inputs=model.encode(texts), labels=torch.as_tensor(list(labels), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.labels.shape[0])
