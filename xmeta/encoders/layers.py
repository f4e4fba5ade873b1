"""Run a BERT-family encoder in two parts: the frozen lower layers once, the adapted upper layers often.

When LoRA sits only in the top layers, everything below them is a fixed function of the input.
An episode's lower hidden states are then computed once and reused by every inner step and the
query pass, which is exact (a test checks it) and removes most of the meta-step's work.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask

SPLITTABLE = ("bert", "roberta", "xlm-roberta", "camembert")
_LAYER_INDEX = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def transformer_layers(encoder: PreTrainedModel) -> nn.ModuleList | None:
    """The encoder's stack of layers, when its forward can be split (BERT-family encoders)."""
    if encoder.config.model_type not in SPLITTABLE:
        return None
    return encoder.encoder.layer


def layer_index(parameter_name: str) -> int | None:
    """Which transformer layer a parameter name belongs to (None: embeddings, head, ...)."""
    found = _LAYER_INDEX.search(parameter_name)
    return int(found.group(1)) if found else None


def _mask(encoder: PreTrainedModel, hidden: torch.Tensor, attention_mask: torch.Tensor):
    return create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)


def run_lower(encoder: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, upto: int,
              inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Embeddings and layers ``0 .. upto-1`` (``inputs_embeds``: word vectors to use instead of the table's)."""
    hidden = encoder.embeddings(input_ids=input_ids, inputs_embeds=inputs_embeds)
    mask = _mask(encoder, hidden, attention_mask)
    for layer in transformer_layers(encoder)[:upto]:
        hidden = layer(hidden, mask)
    return hidden


def run_upper(encoder: PreTrainedModel, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
    """Layers ``start ..`` on hidden states from `run_lower`."""
    mask = _mask(encoder, hidden, attention_mask)
    for layer in transformer_layers(encoder)[start:]:
        hidden = layer(hidden, mask)
    return hidden
