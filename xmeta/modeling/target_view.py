"""The meta-embedding's target-language view: pieces of a unigram model trained on the language's own text.

XLM-R's frozen vocabulary has almost no pieces for some scripts (80% of Cherokee tokens are
``<unk>``). At adapt time a small sentencepiece unigram model is trained on the target language's
text (the adapt examples plus any unlabelled text), and every encoder token gets the mean vector of
the target pieces over its characters: new pieces for a badly covered script, learned from the
language itself. The view belongs to one language: its table, projection and gate are fast weights
of that language's adapter (adapted with it, saved next to it, active with it); other languages
and θ never see it.

Known encoder pieces are segmented from their own piece string (like the character view), so the
view depends on the id alone and `export_merged` can precompute it; a run of ``<unk>`` tokens is
segmented from the characters it replaced, and each token takes the pieces overlapping its span.
The trained model is kept as its serialised proto (``spm.model``): training is deterministic (one
thread, fixed seed, no sampling), so the same text gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..errors import DataError, ModelFolderError
from ..fileio import read_safetensors
from .meta_embedding import (
    SUBWORD_MARK,
    MetaEmbedding,
    TokenFeatures,
    is_word_start,
    mean_bag,
)

TARGETS_DIR = "meta_embedding"  # model folder: meta_embedding/<lang>/{spm.model, target_view.safetensors}
PROTO_NAME, TABLE_NAME = "spm.model", "target_view.safetensors"
SEED = 0
# correction = GAIN · P v: adapt's SGD rate suits LoRA; the view's effective rate is GAIN² times it. Cherokee,
# K=16, θ not meta-trained, 200 test names: macro-F1 .06 without the view, .23 at gain 10, .35 at gain 30.
GAIN = 30.0


def is_target_view_tensor(name: str, lang: str) -> bool:
    """Whether a parameter name belongs to ``lang``'s target view."""
    return f".meta_embedding.targets.{lang}." in name


def is_shared_meta_embedding_tensor(name: str) -> bool:
    """The meta-embedding's slow weights (n-gram table, projection, gates), shared by every language."""
    return ".meta_embedding." in name and ".meta_embedding.targets." not in name


def plain_text(text: str | Sequence[str]) -> str:
    """The characters of one example, whatever its shape (a text, a text pair, a list of words)."""
    return text if isinstance(text, str) else " ".join(str(part) for part in text)


def train_unigram(texts: Iterable[str], vocab_size: int) -> bytes:
    """A unigram model proto for ``texts``; ``vocab_size`` is an upper bound (small texts give fewer pieces)."""
    lines = [" " + " ".join(text.split()) for text in texts if text.strip()]  # leading space: words start with ▁
    if not lines:
        raise DataError("target view: no text to train its sentencepiece model on")
    chars = len(set("".join(lines)))
    spm.set_random_generator_seed(SEED)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=proto, model_type="unigram",
        vocab_size=max(vocab_size, chars + 8), hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        split_by_whitespace=True, bos_id=-1, eos_id=-1, unk_id=0, num_threads=1,
        shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2)
    return proto.getvalue()


class TargetPieces(TokenFeatures):
    """Bags of target-piece ids (sentencepiece ids; 0, its ``<unk>``, is dropped and doubles as padding)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, processor: spm.SentencePieceProcessor) -> None:
        super().__init__(tokenizer)
        self.processor = processor

    def segment(self, text: str) -> list[tuple[int, int, int]]:
        """(piece id, start, end) over ``text``'s characters; identity normalisation keeps one char per char."""
        out, at = [], 0
        for piece in self.processor.encode(text, out_type=str):
            piece_id = self.processor.piece_to_id(piece)
            if piece_id > 0:
                out.append((piece_id, at, at + len(piece)))
            at += len(piece)
        return out

    def piece_bag(self, piece: str) -> list[int]:
        text = " " + piece[1:] if piece.startswith(SUBWORD_MARK) else piece
        return [piece_id for piece_id, _, _ in self.segment(text)]

    def unk_run(self, text: str, spans: Sequence[tuple[int, int]]) -> list[list[int]]:
        start, end = spans[0][0], spans[-1][1]
        lead = " " if is_word_start(text, start) else ""
        pieces = self.segment(lead + text[start:end])
        shift = len(lead) - start
        return [[i for i, a, b in pieces if a < e + shift and b > s + shift] for s, e in spans]


class TargetView(nn.Module):
    """One language's piece table, its zero-init projection into the embedding space and its gate β.

    β = sigmoid(w · (v_sub + c) + b) starts at 1/2; the correction c = GAIN · P v_t starts at exactly
    zero. Without the gain, 10 SGD steps at the inner rate move P by ~1e-3: the view would not learn.
    """

    def __init__(self, proto: bytes, tokenizer: PreTrainedTokenizerBase, hidden_size: int, dim: int) -> None:
        super().__init__()
        processor = spm.SentencePieceProcessor(model_proto=proto)
        self.proto = proto
        self.features = TargetPieces(tokenizer, processor)
        self.pieces = nn.Embedding(processor.get_piece_size(), dim, padding_idx=0)
        with torch.no_grad():  # fixed random features, independent of the global RNG
            self.pieces.weight.normal_(generator=torch.Generator().manual_seed(SEED))
            self.pieces.weight[0].zero_()
        self.projection = nn.Linear(dim, hidden_size, bias=False)
        nn.init.zeros_(self.projection.weight)
        self.gate_weight = nn.Parameter(torch.zeros(hidden_size))
        self.gate_bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("gain", torch.tensor(GAIN))  # saved with the view: its outputs never depend on the code's constant

    def forward(self, subword: torch.Tensor, pieces: torch.Tensor) -> torch.Tensor:
        """β · GAIN · P v_t per token (``pieces``: ``[..., width]`` ids, 0 padding)."""
        correction = self.gain * self.projection(mean_bag(self.pieces, pieces))
        beta = torch.sigmoid(((subword + correction) * self.gate_weight).sum(-1, keepdim=True) + self.gate_bias)
        return beta * correction

    def with_pieces(self, char_ngrams: torch.Tensor, texts: Sequence[str], input_ids: torch.Tensor,
                    offsets: torch.Tensor) -> torch.Tensor:
        """The model's view ids: the n-gram ids with this view's piece ids appended, negated (see MetaEmbedding)."""
        return torch.cat([char_ngrams, -self.features(texts, input_ids, offsets)], dim=-1)


def attach_target_view(model, lang: str, texts: Iterable[str]) -> TargetView:
    """Train ``lang``'s unigram model on ``texts`` and give ``lang`` (already started) a fresh target view."""
    layer: MetaEmbedding = model.peft.base_model.model.meta_embedding
    c = model.config
    hidden = model.peft.base_model.model.encoder.config.hidden_size
    view = TargetView(train_unigram(texts, c.meta_embedding_target_vocab), model.tokenizer, hidden,
                      c.meta_embedding_dim).to(model.device)
    layer.targets[lang] = view
    model.use_language(lang)  # its tensors become trainable fast weights of ``lang``
    return view


def forget_target_view(layer: MetaEmbedding | None, lang: str) -> None:
    if layer is not None and lang in layer.targets:
        del layer.targets[lang]


def save_target_views(layer: MetaEmbedding, directory: Path, langs: Iterable[str]) -> None:
    """``meta_embedding/<lang>/spm.model`` (the proto, as sentencepiece writes it) and the view's tensors."""
    for lang in langs:
        view = layer.target(lang)
        if view is None:
            continue
        folder = directory / TARGETS_DIR / lang
        folder.mkdir(parents=True)
        (folder / PROTO_NAME).write_bytes(view.proto)
        save_file({k: v.detach().contiguous() for k, v in view.state_dict().items()}, folder / TABLE_NAME,
                  metadata={"format": "pt"})


def load_target_views(model, directory: Path) -> None:
    """Rebuild the target view of every adapted language that was saved with one."""
    layer: MetaEmbedding = model.peft.base_model.model.meta_embedding
    hidden = model.peft.base_model.model.encoder.config.hidden_size
    for lang in model.config.adapted_languages:
        folder = directory / TARGETS_DIR / lang
        if not folder.is_dir():
            continue
        if not (folder / PROTO_NAME).is_file():
            raise ModelFolderError(f"{folder / PROTO_NAME}: missing sentencepiece model of {lang}'s target view")
        try:
            view = TargetView((folder / PROTO_NAME).read_bytes(), model.tokenizer, hidden, model.config.meta_embedding_dim)
        except RuntimeError as err:
            raise ModelFolderError(f"{folder / PROTO_NAME}: not a sentencepiece model ({err})") from err
        state, expected = read_safetensors(folder / TABLE_NAME), view.state_dict()
        for name, value in expected.items():
            if name not in state or state[name].shape != value.shape:
                found = tuple(state[name].shape) if name in state else "missing"
                raise ModelFolderError(f"{folder / TABLE_NAME}: {name} is {found}, expected shape {tuple(value.shape)}")
        view.load_state_dict({name: state[name] for name in expected})
        layer.targets[lang] = view.to(model.device)

