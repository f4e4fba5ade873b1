"""Texts to model inputs. Padding is dynamic (to the longest text of the batch, not
to ``max_length``): episodes are short, and padding to 512 would waste most compute.

Three kinds of input: a text, a ``(text, text_pair)`` tuple (NLI, paraphrase) and a list of
words (tagging). With ``offsets`` each token's character span is given in one flat string per
row (`flat_texts`, `flat_words`), which is what the meta-embedding's character view reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from xmeta.errors import DataError

PAIR_JOIN = "\n"  # between the two texts of a pair in the flat string (whitespace: a word boundary)


def _pairs(texts: Sequence) -> bool:
    """Whether the batch is sentence pairs; a mix of pairs and single texts is refused."""
    kinds = {isinstance(t, (tuple, list)) for t in texts}
    if len(kinds) > 1:
        raise DataError("a batch mixes single texts and (text, text_pair) pairs")
    return kinds == {True}


def flat_texts(texts: Sequence, prefix: str = "") -> list[str]:
    """Per row, the string `encode_texts`' offsets index into (both texts of a pair prefixed, as
    the exported tokenizer's normaliser prefixes each sequence)."""
    return [PAIR_JOIN.join(prefix + part for part in t) if isinstance(t, (tuple, list)) else prefix + t for t in texts]


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence, prefix: str = "", max_length: int = 128,
    offsets: bool = False,
) -> dict[str, torch.Tensor]:
    """Tokenize ``prefix + text`` for each text (e5 encoders expect e.g. "query: ") or each text of a
    pair; ``offsets`` adds ``offset_mapping`` (character spans in the row's `flat_texts` string)."""
    if not texts:
        raise DataError("no texts to encode")
    pairs = _pairs(texts)
    first = [prefix + (t[0] if pairs else t) for t in texts]
    second = [prefix + t[1] for t in texts] if pairs else None
    encoded = tokenizer(first, second, padding="longest", truncation=True, max_length=max_length,
                        return_tensors="pt", return_offsets_mapping=offsets)
    if offsets and pairs:
        spans = encoded["offset_mapping"]
        for row, head in enumerate(first):
            for position, sequence in enumerate(encoded.sequence_ids(row)):
                if sequence == 1:
                    spans[row, position] += len(head) + len(PAIR_JOIN)
    return dict(encoded)


def prefix_words(prefix: str) -> list[str]:
    """The encoder prefix as leading (unlabelled) words: "query: " -> ["query:"]."""
    return prefix.split()


def flat_words(sentences: Sequence[Sequence[str]], prefix: str = "") -> list[str]:
    """Per row, the string `encode_words`' offsets index into: prefix and words joined by spaces."""
    return [" ".join(prefix_words(prefix) + list(words)) for words in sentences]


def encode_words(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]], prefix: str = "", max_length: int = 128,
    offsets: bool = False,
) -> dict[str, torch.Tensor]:
    """Tokenize pre-split words (the prefix as leading words) and mark each word's first sub-token
    in ``word_starts`` (bool, ``[batch, tokens]``): the positions that carry a tag. Words cut off by
    ``max_length`` have no start; a fast tokenizer is required (``word_ids``)."""
    if not sentences:
        raise DataError("no sentences to encode")
    lead = prefix_words(prefix)
    rows = [lead + list(words) for words in sentences]
    encoded = tokenizer(rows, is_split_into_words=True, padding="longest", truncation=True,
                        max_length=max_length, return_tensors="pt", return_offsets_mapping=offsets)
    starts = torch.zeros_like(encoded["input_ids"], dtype=torch.bool)
    for row, words in enumerate(rows):
        word_ids = encoded.word_ids(row)
        begins = [0]
        for word in words[:-1]:
            begins.append(begins[-1] + len(word) + 1)
        for position, word in enumerate(word_ids):
            if word is None:
                continue
            if word >= len(lead) and (position == 0 or word_ids[position - 1] != word):
                starts[row, position] = True
            if offsets:
                encoded["offset_mapping"][row, position] += begins[word]
    return {**dict(encoded), "word_starts": starts}
