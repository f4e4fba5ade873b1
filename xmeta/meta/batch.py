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
    def build(cls, model, texts: Sequence, labels: Sequence[int] | Sequence[Sequence[int]],
              chunk_size: int = DEFAULT_CHUNK, language: str | None = None) -> LabelledBatch:
        """Tokenise once, then cut length-sorted chunks trimmed to their own longest text.

        ``labels`` has one id per text (classification) or one list of ids per text (tagging: one
        per word). A chunk's labels are its rows' labels concatenated, in the order the model
        returns logits (one row per text, or one per tagged word). ``language``: the texts' language
        (romanised when the model reads it romanised)."""
        full = {name: tensor.to(model.device) for name, tensor in model.encode(texts, language).items()}
        lengths = full["attention_mask"].sum(1)
        trim = model.tokenizer.padding_side == "right"
        order = torch.argsort(lengths, stable=True)
        per_text = _row_labels(full, labels)
        chunks = []
        for rows in order.split(chunk_size):
            width = int(lengths[rows].max()) if trim else full["input_ids"].shape[1]
            inputs = {name: tensor[rows, :width] for name, tensor in full.items()}
            targets = [y for row in rows.tolist() for y in per_text[row]]
            chunks.append((model.prepare_for_repeated_passes(inputs),
                           torch.as_tensor(targets, dtype=torch.long, device=model.device)))
        return cls(chunks)

    @property
    def labels(self) -> torch.Tensor:
        """Labels in chunk order (the order of the logits `batch_loss` returns)."""
        return torch.cat([labels for _, labels in self.chunks])

    def __len__(self) -> int:
        return sum(int(labels.shape[0]) for _, labels in self.chunks)


def _row_labels(inputs: dict[str, torch.Tensor], labels: Sequence) -> list[list[int]]:
    """Label ids per text; a text's word labels are cut to the words its encoding kept (``max_length``)."""
    if "word_starts" not in inputs:
        return [[int(y)] for y in labels]
    kept = inputs["word_starts"].sum(1).tolist()
    return [[int(y) for y in row[:n]] for row, n in zip(labels, kept)]
