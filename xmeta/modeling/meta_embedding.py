"""Meta-embeddings: a gated mix of views of each token, for scripts the subword vocabulary covers badly.

A frozen XLM-R vocabulary maps a third of Cherokee tokens to ``<unk>``: every such token gets the
same vector and the encoder cannot tell one word from another. The meta-embedding gives each token
a second, language-agnostic view, a bag of hashed character n-grams (fastText style), and mixes the
views with per-token gates (dynamic meta-embeddings, Kiela et al. 2018)::

    e(t) = Σ_j α_j(t) u_j(t),   u_sub = v_sub(t),   u_j = v_sub(t) + P_j v_j(t),
    α(t) = softmax_j(w_j · u_j(t) + b_j)

Each extra view is projected into the pretrained embedding space as a correction of the subword
vector, with P_j zero-initialised: at step 0 every u_j equals the pretrained embedding, so the
output (computed as v_sub + Σ_{j≠sub} α_j P_j v_j, exact in floating point) is unchanged, while
every P_j still receives a gradient from the first meta-step on. Per-view scoring vectors w_j let
a gate depend on the subword vector itself, e.g. learn to trust characters over ``<unk>``.

``<unk>`` tokens keep their original characters: a run of adjacent ``<unk>`` tokens (the
tokenizer's offsets give the spans) is embedded by the n-grams of the whole run, with
word-boundary marks, plus the token's own characters. Known pieces use their piece string, so
their view depends on the id alone and can be precomputed into an embedding matrix (export).
Hashing is blake2b over UTF-8: the same buckets in every process, unlike Python's ``hash()``.

A third, per-language view (`xmeta.modeling.target_view`) embeds each token by the pieces of a
small unigram model trained on the target language's own text at adapt time: new pieces for a
script the subword vocabulary covers badly. It takes part of the subword view's gate weight, so
the shared gates mean the same with or without it, and it is zero at init like the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from .target_view import TargetView

WORD_START, WORD_END, OWN_CHARS = "<", ">", "@"
SUBWORD_MARK = "▁"  # sentencepiece's word-start marker in piece strings


@lru_cache(maxsize=1 << 18)
def bucket(gram: str, buckets: int) -> int:
    """Bucket id (1..buckets; 0 is padding) of one n-gram, stable across processes and machines."""
    digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % buckets


def char_ngrams(word: str, min_n: int, max_n: int) -> list[str]:
    """The marked word itself and its character n-grams, ``min_n <= n <= max_n`` (fastText's features)."""
    grams = [word]
    for n in range(min_n, max_n + 1):
        grams += [word[i : i + n] for i in range(len(word) - n + 1) if word[i : i + n] != word]
    return grams


def is_word_start(text: str, index: int) -> bool:
    return index == 0 or text[index - 1].isspace()


def pad_bags(bags: Sequence[Sequence[int]], shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Bags of ids as one ``[..., width]`` tensor, 0-padded (``shape``: the leading dims, default ``[len(bags)]``)."""
    width = max((len(bag) for bag in bags), default=0) or 1
    out = torch.zeros(len(bags), width, dtype=torch.long)
    for i, bag in enumerate(bags):
        out[i, : len(bag)] = torch.tensor(bag, dtype=torch.long)
    return out.view(*(shape or (len(bags),)), width)


def mean_bag(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """Mean vector of each bag of ids (zero for an empty bag; id 0 is padding)."""
    count = (ids > 0).sum(-1, keepdim=True).clamp(min=1)
    return table(ids).sum(-2) / count


class TokenFeatures:
    """Per-token bags of feature ids, aligned with the tokenizer's output.

    A known piece's bag comes from its piece string alone (so it depends on the id only and can be
    precomputed into an embedding matrix); a run of adjacent ``<unk>`` tokens is described by the
    characters it replaced (the tokenizer's offsets give the spans). Subclasses say how.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.unk_id = tokenizer.unk_token_id
        self.special = set(tokenizer.all_special_ids) - {self.unk_id}
        self._pieces: dict[int, list[int]] = {}

    def piece_bag(self, piece: str) -> list[int]:
        """The bag of a known piece string (``▁`` marks a word start)."""
        raise NotImplementedError

    def unk_run(self, text: str, spans: Sequence[tuple[int, int]]) -> list[list[int]]:
        """The bags of a run of adjacent ``<unk>`` tokens covering ``spans`` of ``text``."""
        raise NotImplementedError

    def piece(self, token_id: int) -> list[int]:
        if token_id not in self._pieces:
            keep = token_id not in self.special and token_id != self.unk_id
            self._pieces[token_id] = self.piece_bag(self.tokenizer.convert_ids_to_tokens(token_id)) if keep else []
        return self._pieces[token_id]

    def row(self, text: str, token_ids: list[int], offsets: list[tuple[int, int]]) -> list[list[int]]:
        bags: list[list[int]] = []
        t = 0
        while t < len(token_ids):
            if token_ids[t] != self.unk_id:
                bags.append(self.piece(token_ids[t]))
                t += 1
                continue
            end = t + 1
            while end < len(token_ids) and token_ids[end] == self.unk_id and offsets[end][0] == offsets[end - 1][1]:
                end += 1
            bags += self.unk_run(text, [tuple(o) for o in offsets[t:end]])
            t = end
        return bags

    def __call__(self, texts: Sequence[str], input_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, width]`` ids (0: padding) for tokenised ``texts`` (prefix included)."""
        bags = [bag for text, ids, offs in zip(texts, input_ids, offsets) for bag in self.row(text, ids.tolist(), offs.tolist())]
        return pad_bags(bags, tuple(input_ids.shape))


class CharNgramFeatures(TokenFeatures):
    """Bags of hashed character n-gram ids (fastText's features)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, buckets: int, min_n: int = 3, max_n: int = 5,
                 max_grams: int = 48) -> None:
        super().__init__(tokenizer)
        self.buckets, self.min_n, self.max_n, self.max_grams = buckets, min_n, max_n, max_grams

    def ids(self, grams: Sequence[str]) -> list[int]:
        return [bucket(g, self.buckets) for g in grams[: self.max_grams]]

    def piece_bag(self, piece: str) -> list[int]:
        word = WORD_START + piece[1:] if piece.startswith(SUBWORD_MARK) else piece
        return self.ids(char_ngrams(word, self.min_n, self.max_n)) if word.strip(WORD_START) else []

    def unk_run(self, text: str, spans: Sequence[tuple[int, int]]) -> list[list[int]]:
        """The run's marked n-grams plus each token's own characters."""
        start, end = spans[0][0], spans[-1][1]
        word = ((WORD_START if is_word_start(text, start) else "") + text[start:end]
                + (WORD_END if end >= len(text) or text[end].isspace() else ""))
        shared = char_ngrams(word, self.min_n, self.max_n)
        return [self.ids([OWN_CHARS + text[s:e]] + shared) for s, e in spans]


class MetaEmbedding(nn.Module):
    """Gated combination of the pretrained subword vector, a hashed character n-gram view and, for a
    language adapted with its own text, that language's target view.

    The n-gram table, its projection and the gates α are slow weights: meta-learned in the outer loop,
    shared by every language. Target views (``targets[lang]``, `xmeta.modeling.target_view`) belong
    to one language each: fast weights of its adapter, used while that adapter is active.

    One id tensor feeds every view, so the model's inputs keep one name (``char_ngrams``) whatever
    is switched on: n-gram buckets are positive, the active target view's piece ids negative, 0 pads.
    """

    def __init__(self, hidden_size: int, buckets: int, dim: int) -> None:
        super().__init__()
        self.ngrams = nn.Embedding(buckets + 1, dim, padding_idx=0)
        nn.init.normal_(self.ngrams.weight, std=1.0)  # random features: unseen scripts still get distinct words
        with torch.no_grad():
            self.ngrams.weight[0].zero_()
        self.ngram_projection = nn.Linear(dim, hidden_size, bias=False)
        nn.init.zeros_(self.ngram_projection.weight)  # identity at step 0
        views = 2
        self.gate_weight = nn.Parameter(torch.zeros(views, hidden_size))
        self.gate_bias = nn.Parameter(torch.zeros(views))
        self.targets = nn.ModuleDict()
        self.active: str | None = None  # the active adapter: its target view, if it has one, joins the mix

    def target(self, lang: str | None) -> TargetView | None:
        return self.targets[lang] if lang is not None and lang in self.targets else None

    def bag(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean n-gram vector per token (zero for tokens without characters)."""
        return mean_bag(self.ngrams, ids.clamp(min=0))

    def gates(self, subword: torch.Tensor, char_ngrams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """α over the shared views ``[..., 2]`` (subword first) and the n-gram correction ``[..., 1, hidden]``."""
        corrections = self.ngram_projection(self.bag(char_ngrams)).unsqueeze(-2)
        views = torch.cat([subword.unsqueeze(-2), subword.unsqueeze(-2) + corrections], dim=-2)
        return ((views * self.gate_weight).sum(-1) + self.gate_bias).softmax(-1), corrections

    def mix(self, subword: torch.Tensor, ids: torch.Tensor, view: TargetView | None) -> torch.Tensor:
        """v_sub + α_char P_char v_char (+ α_sub β P_t v_t with a target view: β splits the subword
        view's weight between the pretrained piece and the target-language pieces, so the three
        weights still sum to one and the shared α are the same with or without a target view)."""
        alpha, corrections = self.gates(subword, ids)
        out = subword + (alpha[..., 1:, None] * corrections).sum(-2)
        if view is not None:
            out = out + alpha[..., :1] * view(subword, (-ids).clamp(min=0))
        return out

    def forward(self, subword: torch.Tensor, char_ngrams: torch.Tensor) -> torch.Tensor:
        return self.mix(subword, char_ngrams, self.target(self.active))

    @torch.no_grad()
    def vocabulary_matrix(self, word_embeddings: torch.Tensor, features: CharNgramFeatures,
                          view: TargetView | None = None, chunk: int = 8192) -> torch.Tensor:
        """e(t) for every vocabulary id, from its piece string: the export's new embedding matrix
        (with ``view``: that language's target pieces of each piece string too).

        ``<unk>`` and special tokens have no characters here, so their rows stay pretrained.
        """
        rows = []
        for start in range(0, word_embeddings.shape[0], chunk):
            ids = range(start, min(start + chunk, word_embeddings.shape[0]))
            grams = pad_bags([features.piece(i) for i in ids])
            if view is not None:
                grams = torch.cat([grams, -pad_bags([view.features.piece(i) for i in ids])], dim=-1)
            rows.append(self.mix(word_embeddings[start : start + len(ids)], grams, view))
        return torch.cat(rows)
