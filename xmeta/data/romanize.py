"""Romanisation: a script the encoder's vocabulary lacks, rewritten into the Latin alphabet it knows.

Cherokee's syllabary is absent from XLM-R's 250k pieces: 80% of its tokens are ``<unk>``. uroman
(a universal, rule-based romaniser; pure Python, offline) turns "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ" into "tsalagi
gawonihisdi", which the encoder reads as Latin pieces.

Romanisation is input preprocessing, decided once per language and stored in the model config
(``romanized_languages``): `auto` turns it on where the tokenizer's ``<unk>`` share on the
language's own text exceeds `xmeta.coverage.UNK_SHARE_LIMIT`, `on` everywhere, `off` nowhere.

`meta-train --romanized_copies on` adds a romanised copy of each source in a script other than Latin
(``ru-Latn``, ...) to the meta-training languages, so θ also learns to adapt to romanised text.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from collections.abc import Sequence
from typing import Literal

from transformers import PreTrainedTokenizerBase

from ..coverage import measure_coverage
from ..errors import ArgumentError

RomanizeSetting = Literal["auto", "on", "off"]
SETTINGS: tuple[str, ...] = ("auto", "on", "off")
ROMANIZED_SUFFIX = "-Latn"  # a romanised copy's language code: the BCP 47 script subtag of the Latin alphabet
# a language gets a romanised copy when fewer of its letters than this are Latin: most of them are in
# another script (Vietnamese, Turkish, Polish are Latin with diacritics: share ≈ 1; Japanese with rōmaji ≈ 0)
MIN_LATIN_SHARE = 0.5


@functools.cache
def _uroman():
    """One uroman instance per process: loading its rule tables takes seconds."""
    import uroman

    return uroman.Uroman()


@functools.lru_cache(maxsize=200_000)
def romanize_string(text: str) -> str:
    """``text`` in Latin letters (deterministic; Latin text comes back unchanged). A word whose
    romanisation is blank keeps its original form, so no word disappears from a tagged sentence."""
    out = _uroman().romanize_string(text)
    return out if out.strip() or not text.strip() else text


def romanize_text(text):
    """A text, a ``(text, text_pair)`` pair or a list of words (tagging), romanised part by part."""
    if isinstance(text, str):
        return romanize_string(text)
    if isinstance(text, tuple):
        return tuple(romanize_string(part) for part in text)
    return [romanize_string(word) for word in text]


def romanize_texts(texts: Sequence) -> list:
    return [romanize_text(t) for t in texts]


def plain_strings(texts: Sequence) -> list[str]:
    """The strings in ``texts`` (pairs and word lists joined), for measuring coverage."""
    return [t if isinstance(t, str) else " ".join(t) for t in texts]


def check_setting(setting: str, flag: str = "--romanize") -> str:
    if setting not in SETTINGS:
        raise ArgumentError(f"{flag}: {setting!r} is not one of {', '.join(SETTINGS)}")
    return setting


def romanization_needed(setting: str, tokenizer: PreTrainedTokenizerBase, lang: str, texts: Sequence) -> bool:
    """The per-language decision: ``on``/``off`` as set; ``auto`` where more than 5% of the tokens of
    ``texts`` (the language's training or adaptation text) are ``<unk>``."""
    if check_setting(setting) != "auto":
        return setting == "on"
    return measure_coverage(tokenizer, lang, plain_strings(texts)).poorly_covered


def romanized_task(task, lang: str | None = None):
    """``task`` (a `LanguageTask` or `TaggingTask`) with its texts romanised (and named ``lang`` if given)."""
    return dataclasses.replace(task, texts=romanize_texts(task.texts), lang=lang or task.lang)


def latin_share(texts: Sequence) -> float:
    """The share of the letters in ``texts`` that are Latin (accented ones too); 1.0 with no letters."""
    letters = [ch for text in plain_strings(texts) for ch in text if ch.isalpha()]
    return sum(unicodedata.name(ch, "").startswith("LATIN") for ch in letters) / len(letters) if letters else 1.0


def gets_romanized_copy(task) -> bool:
    """Whether `romanized_copies` copies ``task``: its letters are mostly not Latin."""
    return latin_share(task.texts) < MIN_LATIN_SHARE


def romanized_copies(tasks: dict) -> dict:
    """``<lang>-Latn``: a romanised copy of each language whose letters are mostly not Latin, with the
    same rows, labels and items. Meta-training on them teaches θ to adapt to romanised input, which is
    what a target read romanised (``--romanize``) gives it."""
    return {f"{lang}{ROMANIZED_SUFFIX}": romanized_task(task, f"{lang}{ROMANIZED_SUFFIX}")
            for lang, task in tasks.items() if gets_romanized_copy(task)}


def romanize_targets(train: dict, test: dict, setting: str, encoder: str) -> list[str]:
    """Romanise, in place, the train and test tasks of each language its training text calls for
    (data-level, so every method of a comparison reads the same input); returns those languages."""
    from transformers import AutoTokenizer

    from ..encoders import resolve_encoder

    if check_setting(setting) == "off":
        return []
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(encoder).name_or_path)
    langs = [lang for lang, task in train.items() if romanization_needed(setting, tokenizer, lang, task.texts)]
    for lang in langs:
        train[lang], test[lang] = romanized_task(train[lang]), romanized_task(test[lang])
    return langs
