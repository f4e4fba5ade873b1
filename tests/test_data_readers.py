"""Readers: every format, and every user mistake reported with its exact culprit."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from xmeta.data import Columns, LabelMap, read_file, read_hf_dataset, tasks_from_dataset
from xmeta.errors import DataError

ROWS = [("un chat", "animal", "fr"), ("a dog", "animal", "en"), ("une pomme", "food", "fr")]


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _jsonl(rows) -> str:
    return "".join(f'{{"text": "{t}", "label": "{lab}", "lang": "{lang}"}}\n' for t, lab, lang in rows)


def _expect(ds: Dataset) -> None:
    assert ds.to_dict() == {"text": [r[0] for r in ROWS], "label": [r[1] for r in ROWS], "lang": [r[2] for r in ROWS]}


def test_read_each_file_format(tmp_path: Path) -> None:
    _expect(read_file(_write(tmp_path, "d.jsonl", _jsonl(ROWS) + "\n")))
    csv = "text,label,lang\n" + "".join(f'"{t}",{lab},{lang}\n' for t, lab, lang in ROWS)
    _expect(read_file(_write(tmp_path, "d.csv", csv)))
    tsv = "lang\ttext\tlabel\n" + "".join(f"{lang}\t{t}\t{lab}\n" for t, lab, lang in ROWS)
    _expect(read_file(_write(tmp_path, "d.tsv", tsv)))


def test_custom_columns_and_language_argument(tmp_path: Path) -> None:
    path = _write(tmp_path, "yo.csv", "sentence,tag,id\nẹ kú àárọ̀,greet,g1\n")
    ds = read_file(path, Columns(text="sentence", label="tag", item_id="id"), lang="yo")
    assert ds.to_list() == [{"text": "ẹ kú àárọ̀", "label": "greet", "lang": "yo", "item_id": "g1"}]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "a", "label": "x", "lang": "fr"}\n{"text": "b", "label"\n',
         r"bad\.jsonl:2:\d+: malformed JSON"),
        ("bad.jsonl", '["a", "x"]\n', r"bad\.jsonl:1: expected a JSON object"),
        ("bad.jsonl", '{"text": "a", "label": "x", "lang": "fr"}\n{"txt": "b", "label": "x", "lang": "fr"}\n',
         r"bad\.jsonl:2: missing column 'text'; columns found: txt, label, lang"),
        ("bad.csv", "text,lang\na,fr\n", r"bad\.csv:2: missing column 'label'; columns found: text, lang"),
        ("bad.tsv", "text\tlabel\na\tx\n", r"bad\.tsv:2: missing column 'lang' \(or pass a language\)"),
        ("bad.jsonl", "", r"bad\.jsonl: empty file"),
        ("bad.csv", "text,label,lang\n", r"bad\.csv: empty file \(no data rows\)"),
        ("bad.csv", "text,label,lang\nok,x,fr\n  ,x,fr\n", r"bad\.csv:3: empty text in column 'text'"),
        ("bad.jsonl", '{"text": "ok", "label": "", "lang": "fr"}\n', r"bad\.jsonl:1: empty label"),
        ("bad.csv", "text,label,lang\na,x,fr,extra\n", r"bad\.csv:2: expected 3 fields"),
        ("bad.tsv", b"text\tlabel\tlang\nok\tx\tfr\ncaf\xe9\tx\tfr\n", r"bad\.tsv:3: not UTF-8 \(byte 0xe9 at offset 27\)"),
        ("bad.txt", "x", r"bad\.txt: unsupported file type '\.txt'"),
    ],
)
def test_reader_errors_name_the_culprit(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError, match=message) as err:
        read_file(path)
    assert "\n" not in str(err.value)


def test_hf_saved_to_disk_with_class_labels(tmp_path: Path) -> None:
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["food", "animal"])})
    ds = Dataset.from_dict({"sentence": [r[0] for r in ROWS], "label": [1, 1, 0]}, features=features)
    DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "saved"))
    out = read_hf_dataset(tmp_path / "saved", split="test", columns=Columns(text="sentence"), lang="fr")
    assert out["label"] == ["animal", "animal", "food"] and set(out["lang"]) == {"fr"}
    with pytest.raises(DataError, match=r"saved: no split 'dev' \(splits found: train, test\)"):
        read_hf_dataset(tmp_path / "saved", split="dev", lang="fr")
    with pytest.raises(DataError, match=r"nothere: dataset folder not found"):
        read_hf_dataset(tmp_path / "nothere")


def test_hf_folder_of_data_files(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    _write(folder, "train.jsonl", _jsonl(ROWS))
    _expect(read_hf_dataset(folder, split="train"))
    _write(folder, "train.jsonl", _jsonl(ROWS[:1]) + '{"text": "", "label": "x", "lang": "fr"}\n')
    with pytest.raises(DataError, match=r"files\[train\] row 1: empty text"):
        read_hf_dataset(folder, split="train")


def test_tasks_from_dataset_groups_languages(tmp_path: Path) -> None:
    ds = read_file(_write(tmp_path, "d.jsonl", _jsonl(ROWS)))
    tasks = tasks_from_dataset(ds, origin="d.jsonl")
    assert list(tasks) == ["fr", "en"] and tasks["fr"].texts == ["un chat", "une pomme"]
    assert tasks["fr"].label_map.names == ("animal", "food") and tasks["fr"].labels == [0, 1]
    assert tasks["en"].by_label() == {0: [0]}
    with pytest.raises(DataError, match=r"d\.jsonl, language fr: unseen label 'food'"):
        tasks_from_dataset(ds, LabelMap(("animal",)), origin="d.jsonl")
