"""Read a user's labelled texts (JSONL, CSV, TSV or a Hugging Face dataset) into one
``datasets.Dataset`` with columns text, label, lang (and item_id when present; text_pair for
sentence-pair tasks such as NLI, when ``Columns.text_pair`` names its column).

Every error names the exact culprit (file:line, column, byte offset) because these
files are hand-made for new languages and the user must be able to fix them fast.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, load_dataset, load_from_disk

from xmeta.data.texts import checked_label, checked_text
from xmeta.errors import DataError

FILE_FORMATS = (".jsonl", ".csv", ".tsv")


@dataclass(frozen=True)
class Columns:
    """Which source columns hold the text, label, language and (optional) item id."""

    text: str = "text"
    label: str = "label"
    lang: str = "lang"
    item_id: str = "item_id"
    text_pair: str | None = None  # the second text of a pair (NLI hypothesis, paraphrase candidate)


def read_file(path: str | Path, columns: Columns = Columns(), lang: str | None = None) -> Dataset:
    """Read a ``.jsonl``, ``.csv`` or ``.tsv`` file; ``lang`` fills in a missing lang column."""
    path = Path(path)
    text = read_text_file(path, FILE_FORMATS)
    rows = _jsonl_rows(path, text) if path.suffix == ".jsonl" else _delimited_rows(path, text)
    return _to_dataset(rows, columns, lang, str(path))


def read_lines(path: str | Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file (any suffix): one text a line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return [line for line in _decode(path).splitlines() if line.strip()]


def read_texts(path: str | Path, columns: Columns = Columns()) -> list:
    """Unlabelled texts to classify: a ``.txt`` file's lines, or the text column (and ``columns.text_pair``,
    as pairs) of a JSONL/CSV/TSV file; labels and languages in the file are ignored."""
    path = Path(path)
    if path.suffix == ".txt":
        return read_lines(path)
    text = read_text_file(path, FILE_FORMATS + (".txt",), " for texts")
    rows = _jsonl_rows(path, text) if path.suffix == ".jsonl" else _delimited_rows(path, text)
    texts = []
    for where, row in rows:
        wanted = [columns.text] + ([columns.text_pair] if columns.text_pair else [])
        missing = next((c for c in wanted if c not in row), None)
        if missing is not None:
            raise DataError(f"{where}: missing column '{missing}'; columns found: {', '.join(map(str, row)) or 'none'}")
        parts = [checked_text(row[c], where, c) for c in wanted]
        texts.append(parts[0] if len(parts) == 1 else tuple(parts))
    return texts


def read_hf_dataset(
    name_or_path: str | Path,
    config: str | None = None,
    split: str = "train",
    columns: Columns = Columns(),
    lang: str | None = None,
    revision: str | None = None,
    data_dir: str | None = None,
) -> Dataset:
    """Read a hub dataset id, a folder saved with ``save_to_disk`` or a folder of data files."""
    dataset, origin = load_hf_split(name_or_path, config, split, revision=revision, data_dir=data_dir)
    return _to_dataset(_hf_rows(dataset, columns.label, origin), columns, lang, origin)


def load_hf_split(name_or_path: str | Path, config: str | None = None, split: str = "train",
                  revision: str | None = None, data_dir: str | None = None) -> tuple[Dataset, str]:
    """One split of a hub dataset (``config``: its subset) or of a local folder, and its name for errors.

    ``revision`` and ``data_dir`` reach script datasets, which datasets >= 4 no longer runs: their
    parquet export (revision ``refs/convert/parquet``) keeps one folder (``data_dir``) per config."""
    source = str(name_or_path)
    folder = Path(source)
    if source.startswith(("/", ".", "~")) and not folder.exists():  # a path, not a hub id
        raise DataError(f"{source}: dataset folder not found")
    saved = (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()
    try:
        loaded = load_from_disk(source) if saved else load_dataset(source, config, revision=revision, data_dir=data_dir)
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{source}: cannot load dataset: {first}") from None
    dataset = _pick_split(loaded, split, source) if isinstance(loaded, DatasetDict) else loaded
    where = "/".join(part for part in (source, data_dir) if part)
    return dataset, f"{where}[{split}]"


def _hf_rows(dataset: Dataset, label: str, origin: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows with ClassLabel ids turned into names: labels are names everywhere in xmeta."""
    feature = dataset.features.get(label)
    for i, row in enumerate(dataset):
        if isinstance(feature, ClassLabel) and row.get(label) is not None:
            row[label] = feature.int2str(row[label]) if row[label] >= 0 else None  # -1: unlabelled
        yield f"{origin} row {i}", row


def _pick_split(loaded: DatasetDict, split: str, source: str) -> Dataset:
    if split not in loaded:
        raise DataError(f"{source}: no split '{split}' (splits found: {', '.join(loaded)})")
    return loaded[split]


def read_text_file(path: Path, formats: Iterable[str], what: str = "") -> str:
    """The text of a data file of one of ``formats`` (suffixes), with one-line errors for the usual mistakes."""
    if path.suffix not in formats:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'{what} (use {', '.join(formats)})")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text


def _decode(path: Path) -> str:
    """UTF-8 text; a bad byte is reported by line and byte offset, not a traceback."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); save the file as UTF-8"
        ) from None


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}:{err.colno}: malformed JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
        yield f"{path}:{number}", row


def _delimited_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    header = reader.fieldnames or []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or None in row.values():
            raise DataError(f"{where}: expected {len(header)} fields ({', '.join(header)}), got a different count")
        yield where, row


def _to_dataset(
    rows: Iterable[tuple[str, dict[str, Any]]], columns: Columns, lang: str | None, origin: str
) -> Dataset:
    """Validate and rename rows: every text non-empty, every row with a label and a language."""
    out: dict[str, list[str]] = {"text": [], "text_pair": [], "label": [], "lang": [], "item_id": []}
    has_item_id = None
    for where, row in rows:
        if has_item_id is None:
            has_item_id = columns.item_id in row
        wanted = [columns.text, columns.label] + ([] if lang else [columns.lang])
        wanted += [columns.text_pair] if columns.text_pair else []
        wanted += [columns.item_id] if has_item_id else []
        for column in wanted:
            if column not in row:
                hint = " (or pass a language)" if column == columns.lang else ""
                raise DataError(
                    f"{where}: missing column '{column}'{hint}; columns found: {', '.join(map(str, row)) or 'none'}"
                )
        for column in (columns.text, columns.text_pair):
            if column:
                checked_text(row[column], where, column)
        text = row[columns.text]
        label = checked_label(row[columns.label], where, columns.label)
        row_lang = row.get(columns.lang) or lang
        if not row_lang:
            raise DataError(f"{where}: empty language in column '{columns.lang}'")
        out["text"].append(text)
        out["text_pair"].append(row[columns.text_pair] if columns.text_pair else "")
        out["label"].append(label)
        out["lang"].append(str(row_lang))
        out["item_id"].append(str(row[columns.item_id]) if has_item_id else "")
    if has_item_id is None:
        raise DataError(f"{origin}: empty file (no data rows)")
    if not has_item_id:
        del out["item_id"]
    if not columns.text_pair:
        del out["text_pair"]
    return Dataset.from_dict(out)
