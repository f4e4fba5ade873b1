"""A user's own labelled (text) or tagged (CoNLL, word-list JSONL) file, read into one task per language."""

from __future__ import annotations

from pathlib import Path

from xmeta.arguments import DataArguments
from xmeta.data.readers import Columns, read_file
from xmeta.data.tagging import CONLL_SUFFIXES, CONLLU_SUFFIXES, TagColumns, read_tagged_file
from xmeta.data.tagging_task import tagging_tasks_from_dataset
from xmeta.data.task import LabelMap, LanguageTask, tasks_from_dataset


def file_columns(data: DataArguments) -> Columns:
    return Columns(text=data.text_column, label=data.label_column, lang=data.lang_column,
                   text_pair=data.text_pair_column or None)


def _tagged(path: str, data: DataArguments) -> bool:
    """Tagging data: a CoNLL(-U) file, or JSONL whose first row has the word-list column."""
    suffix = Path(path).suffix
    if suffix in CONLL_SUFFIXES + CONLLU_SUFFIXES:
        return True
    if suffix != ".jsonl" or not Path(path).is_file():
        return False
    with open(path, "rb") as handle:  # bytes: the reader reports encoding errors with their line
        first = next((line for line in handle if line.strip()), b"")
    return f'"{data.tokens_column}"'.encode() in first


def file_tasks(path: str, data: DataArguments, label_map: LabelMap | None, lang: str | None = None) -> dict[str, LanguageTask]:
    """The languages of a user's labelled (or tagged) file (``lang`` fills a missing language column)."""
    if _tagged(path, data):
        index = data.conll_tag_index if Path(path).suffix not in CONLLU_SUFFIXES or data.conll_tag_index != -1 else None
        columns = TagColumns(tokens=data.tokens_column, tags=data.tag_column, lang=data.lang_column, tag_index=index)
        return tagging_tasks_from_dataset(read_tagged_file(path, columns, lang or None), label_map, origin=path)
    return tasks_from_dataset(read_file(path, file_columns(data), lang=lang or None), label_map, origin=path)
