"""The plain network under the adapters: frozen encoder, mean pooling, linear head."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ..encoders import run_upper
from .meta_embedding import MetaEmbedding
from .pooling import mean_pool


class PooledClassifier(nn.Module):
    """Encoder -> mean pool -> dropout -> linear.

    peft wraps this whole module: LoRA goes into the encoder's attention projections and the
    ``classifier`` is a per-adapter ``modules_to_save`` copy, so one language's adapter is its
    LoRA *and* its head, switched together by ``set_adapter``. Given ``lower_hidden``, the output of
    the first ``lower_layers`` (frozen) layers (see `xmeta.encoders.layers`), only the rest run.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)
        self.meta_embedding: MetaEmbedding | None = None  # set by the model when config.meta_embedding

    def word_vectors(self, input_ids: torch.Tensor, char_ngrams: torch.Tensor | None) -> torch.Tensor | None:
        """Meta-embedded word vectors, or None to let the encoder look up its own table."""
        if self.meta_embedding is None:
            return None
        if char_ngrams is None:
            raise ValueError("the meta-embedding needs char_ngrams: tokenise with model.encode()")
        return self.meta_embedding(self.encoder.get_input_embeddings()(input_ids), char_ngrams)

    def hidden(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
               lower_hidden: torch.Tensor | None = None, lower_layers: int = 0,
               char_ngrams: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's last hidden states (a token head reads them directly)."""
        if lower_hidden is None:
            embeds = self.word_vectors(input_ids, char_ngrams)
            words = {"input_ids": input_ids} if embeds is None else {"inputs_embeds": embeds}
            return self.encoder(**words, attention_mask=attention_mask).last_hidden_state
        return run_upper(self.encoder, lower_hidden, attention_mask, lower_layers)

    def pooled(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
               lower_hidden: torch.Tensor | None = None, lower_layers: int = 0,
               char_ngrams: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.hidden(input_ids, attention_mask, lower_hidden, lower_layers, char_ngrams)
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                lower_hidden: torch.Tensor | None = None, lower_layers: int = 0,
                char_ngrams: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.pooled(input_ids, attention_mask, lower_hidden, lower_layers, char_ngrams)
        return self.classifier(self.dropout(pooled))
