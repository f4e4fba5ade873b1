"""Texts to model inputs. Padding is dynamic (to the longest text of the batch, not
to ``max_length``): episodes are short, and padding to 512 would waste most compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from xmeta.errors import DataError


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], prefix: str = "", max_length: int = 128,
    offsets: bool = False,
) -> dict[str, torch.Tensor]:
    """Tokenize ``prefix + text`` for each text (e5 encoders expect e.g. "query: ");
    ``offsets`` adds ``offset_mapping`` (character spans in ``prefix + text``)."""
    if not texts:
        raise DataError("no texts to encode")
    return dict(
        tokenizer(
            [prefix + text for text in texts],
            padding="longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_offsets_mapping=offsets,
        )
    )
