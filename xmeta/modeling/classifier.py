"""The plain network under the adapters: frozen encoder, mean pooling, linear head."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from .pooling import mean_pool


class PooledClassifier(nn.Module):
    """Encoder -> mean pool -> dropout -> linear.

    peft wraps this whole module: LoRA goes into the encoder's attention projections and the
    ``classifier`` is a per-adapter ``modules_to_save`` copy, so one language's adapter is its
    LoRA *and* its head, switched together by ``set_adapter``.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooled(input_ids, attention_mask)))
