"""How well an encoder's subword vocabulary covers a language: the numbers behind ``--meta_embedding on``.

A language the vocabulary covers badly shows it in three ways: many ``<unk>`` tokens (the script is
missing: Cherokee under XLM-R), many pieces per word, or many words shattered into 4+ pieces. Only
the first one earns the recommendation: in the benchmark (README) the layer lifted Cherokee but cost
Yoruba, Igbo and Xhosa, whose long words the pretrained pieces still spell out usefully.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

UNK_SHARE_LIMIT = 0.05  # above this, the character view of <unk> spans has work to do
LONG_WORD_PIECES = 4  # reported, not used to recommend (see the module docstring)


@dataclass
class Coverage:
    lang: str
    words: int
    tokens: int
    unk_tokens: int
    long_words: int

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / max(self.words, 1)

    @property
    def unk_share(self) -> float:
        return self.unk_tokens / max(self.tokens, 1)

    @property
    def long_word_share(self) -> float:
        return self.long_words / max(self.words, 1)

    @property
    def poorly_covered(self) -> bool:
        return self.unk_share > UNK_SHARE_LIMIT


def measure_coverage(tokenizer: PreTrainedTokenizerBase, lang: str, texts: Sequence[str]) -> Coverage:
    """Tokenise each whitespace word on its own (words without a letter or digit, e.g. ``|``, are skipped)."""
    words = [w for text in texts for w in text.split() if any(c.isalnum() for c in w)]
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    unk = tokenizer.unk_token_id
    return Coverage(lang, len(words), sum(len(p) for p in pieces), sum(p.count(unk) for p in pieces),
                    sum(len(p) >= LONG_WORD_PIECES for p in pieces))


def coverage_table(rows: Sequence[Coverage], romanized: Sequence[Coverage]) -> str:
    """A markdown table, one row per language (``romanized``: the same texts romanised, same order),
    and the recommendation lines."""
    lines = [f"| lang | words | tokens/word | <unk> share | <unk> romanised | words in {LONG_WORD_PIECES}+ pieces "
             f"| romanize auto | meta-embedding |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r, roman in zip(rows, romanized, strict=True):
        lines.append(f"| {r.lang} | {r.words} | {r.tokens_per_word:.2f} | {r.unk_share:.1%} | {roman.unk_share:.1%} "
                     f"| {r.long_word_share:.1%} | {'on' if r.poorly_covered else 'off'} "
                     f"| {'recommended' if r.poorly_covered else '-'} |")
    poor = [r.lang for r in rows if r.poorly_covered]
    advice = (f"Poorly covered: {', '.join(poor)}. --romanize auto (meta-train's default) reads them romanised (uroman) "
              f"in every step: the '<unk> romanised' column. Or meta-train with --meta_embedding on (a character n-gram "
              f"view of every token, <unk> spans included) and adapt with --meta_embedding_adapt --target_text FILE (new "
              f"pieces learned from the language's own text)." if poor
              else "Coverage is fine: --romanize auto leaves every language as it is, --meta_embedding off is enough.")
    return "\n".join(lines) + "\n\n" + advice + "\n"
