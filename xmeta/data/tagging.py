"""Read tagged sentences (NER, POS) into one ``datasets.Dataset`` with columns tokens, tags, lang.

Formats: CoNLL (one word per line, whitespace-separated columns, blank line between sentences,
``-DOCSTART-`` lines skipped), CoNLL-U (tab-separated, ``#`` comments, multiword-token ``1-2``
and empty-node ``1.1`` lines skipped: the syntactic words carry the tags), JSONL with token and
tag lists, and Hugging Face datasets whose tag column is a sequence of ``ClassLabel`` ids.
Every error names the file and line (or dataset row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset

from xmeta.data.readers import _jsonl_rows, load_hf_split, read_text_file
from xmeta.errors import DataError

CONLL_SUFFIXES = (".conll", ".iob", ".bio")
CONLLU_SUFFIXES = (".conllu",)
TAGGED_FORMATS = CONLL_SUFFIXES + CONLLU_SUFFIXES + (".jsonl",)
FORM_COLUMN, UPOS_COLUMN = 1, 3  # CoNLL-U: ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC


@dataclass(frozen=True)
class TagColumns:
    """Where words and tags are: named fields (JSONL, datasets) or column numbers (CoNLL files;
    ``tag_index`` -1 is the last column, and CoNLL-U defaults to UPOS)."""

    tokens: str = "tokens"
    tags: str = "tags"
    lang: str = "lang"
    word_index: int | None = None  # None: the first column (CoNLL), FORM (CoNLL-U)
    tag_index: int | None = None  # None: the last column (CoNLL), UPOS (CoNLL-U)


def read_tagged_file(path: str | Path, columns: TagColumns = TagColumns(), lang: str | None = None) -> Dataset:
    """Read a CoNLL, CoNLL-U or JSONL file of tagged sentences; ``lang`` fills a missing language."""
    path = Path(path)
    text = read_text_file(path, TAGGED_FORMATS, " for tagging")
    if path.suffix == ".jsonl":
        rows = _json_sentences(_jsonl_rows(path, text), columns, lang)
    else:
        if not lang:
            raise DataError(f"{path}: CoNLL files have no language column; pass a language")
        rows = _conll_sentences(path, text, columns, lang, conllu=path.suffix in CONLLU_SUFFIXES)
    return _to_dataset(rows, str(path))


def read_tagged_hf(name_or_path: str | Path, config: str | None = None, split: str = "train",
                   columns: TagColumns = TagColumns(), lang: str | None = None,
                   revision: str | None = None, data_dir: str | None = None) -> Dataset:
    """Read a hub dataset id or local dataset folder whose tag column holds ids (ClassLabel) or names
    (``revision``, ``data_dir``: see `load_hf_split`)."""
    dataset, origin = load_hf_split(name_or_path, config, split, revision=revision, data_dir=data_dir)
    for column in (columns.tokens, columns.tags):
        if column not in dataset.column_names:
            raise DataError(f"{origin}: missing column '{column}'; columns found: {', '.join(dataset.column_names)}")
    feature = getattr(dataset.features[columns.tags], "feature", None)
    names = feature.names if isinstance(feature, ClassLabel) else None
    rows = ((f"{origin} row {i}", {**row, columns.tags: [names[t] for t in row[columns.tags]] if names else row[columns.tags]})
            for i, row in enumerate(dataset))
    return _to_dataset(_json_sentences(rows, columns, lang), origin)


def _conll_sentences(path: Path, text: str, columns: TagColumns, lang: str,
                     conllu: bool) -> Iterator[tuple[str, list[str], list[str], str]]:
    words: list[str] = []
    tags: list[str] = []
    start = 0
    tag_index = columns.tag_index if columns.tag_index is not None else (UPOS_COLUMN if conllu else -1)
    word_index = columns.word_index if columns.word_index is not None else (FORM_COLUMN if conllu else 0)
    for number, line in enumerate(text.splitlines() + [""], 1):
        stripped = line.strip()
        if not stripped:
            if words:
                yield f"{path}:{start}", words, tags, lang
            words, tags = [], []
            continue
        if conllu and stripped.startswith("#") or stripped.startswith("-DOCSTART-"):
            continue  # a CoNLL-U comment, or CoNLL 2003's document marker
        fields = line.rstrip("\n").split("\t") if conllu else stripped.split()
        if conllu and ("-" in fields[0] or "." in fields[0]):
            continue  # multiword token or empty node: no tag of its own
        if len(fields) < 2 or max(word_index, tag_index if tag_index >= 0 else -tag_index - 1) >= len(fields):
            raise DataError(f"{path}:{number}: expected a word in column {word_index} and a tag in column "
                            f"{tag_index}, got {len(fields)} column(s): {stripped[:60]!r}")
        if not words:
            start = number
        words.append(fields[word_index])
        tags.append(fields[tag_index])


def _json_sentences(rows: Iterable[tuple[str, dict[str, Any]]], columns: TagColumns,
                    lang: str | None) -> Iterator[tuple[str, list[str], list[str], str]]:
    for where, row in rows:
        for column in (columns.tokens, columns.tags) + (() if lang else (columns.lang,)):
            if column not in row:
                hint = " (or pass a language)" if column == columns.lang else ""
                raise DataError(f"{where}: missing column '{column}'{hint}; columns found: {', '.join(map(str, row))}")
        words, tags = row[columns.tokens], row[columns.tags]
        if not isinstance(words, list) or not isinstance(tags, list):
            raise DataError(f"{where}: columns '{columns.tokens}' and '{columns.tags}' must be lists")
        yield where, [str(w) for w in words], [str(t) for t in tags], str(row.get(columns.lang) or lang)


def _to_dataset(rows: Iterable[tuple[str, list[str], list[str], str]], origin: str) -> Dataset:
    """Check every sentence (non-empty, one tag per word, no empty word) and collect the columns."""
    out: dict[str, list] = {"tokens": [], "tags": [], "lang": []}
    for where, words, tags, lang in rows:
        if not words:
            raise DataError(f"{where}: empty sentence")
        if len(words) != len(tags):
            raise DataError(f"{where}: {len(words)} words but {len(tags)} tags")
        empty = next((i for i, (w, t) in enumerate(zip(words, tags)) if not w.strip() or not t.strip()), None)
        if empty is not None:
            raise DataError(f"{where}: empty word or tag at position {empty}")
        if not lang or lang == "None":
            raise DataError(f"{where}: empty language")
        out["tokens"].append(words)
        out["tags"].append(tags)
        out["lang"].append(lang)
    if not out["tokens"]:
        raise DataError(f"{origin}: no sentences")
    return Dataset.from_dict(out)
