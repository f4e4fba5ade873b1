"""Tagged-sentence readers (CoNLL, CoNLL-U, JSONL, datasets) and the sentence episode sampler."""

from __future__ import annotations

import json

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from xmeta.data import (
    SentenceEpisodeSampler,
    TagColumns,
    read_tagged_file,
    read_tagged_hf,
    sample_k_sentences,
    tag_map,
    tagging_tasks_from_dataset,
)
from xmeta.errors import DataError

CONLL = """-DOCSTART- -X- O O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""

CONLLU = """# sent_id = 1
# text = Vámonos al mar.
1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_
1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_
2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_
3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_
3\ta\ta\tADP\t_\t_\t5\tcase\t_\t_
4\tel\tel\tDET\t_\t_\t5\tdet\t_\t_
5\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\t_
5.1\tnada\t_\t_\t_\t_\t_\t_\t_\t_
6\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_

# sent_id = 2
1\tSí\tsí\tINTJ\t_\t_\t0\troot\t_\t_
"""


def test_conll_columns_docstart_and_blank_lines(tmp_path):
    path = tmp_path / "en.conll"
    path.write_text(CONLL, encoding="utf-8")
    data = read_tagged_file(path, lang="en")
    assert data["tokens"] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert data["tags"] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert data["lang"] == ["en", "en"]
    chunks = read_tagged_file(path, TagColumns(tag_index=2), lang="en")
    assert chunks["tags"][1] == ["B-NP", "I-NP"]


def test_conllu_skips_comments_multiword_tokens_and_empty_nodes(tmp_path):
    path = tmp_path / "es.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    data = read_tagged_file(path, lang="es")
    assert data["tokens"] == [["Vamos", "nos", "a", "el", "mar", "."], ["Sí"]]
    assert data["tags"][0] == ["VERB", "PRON", "ADP", "DET", "NOUN", "PUNCT"]
    xpos = read_tagged_file(path, TagColumns(tag_index=2), lang="es")  # the lemma column, to show it is configurable
    assert xpos["tags"][1] == ["sí"]


def test_jsonl_tokens_and_tags(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"tokens": ["Ada", "Lovelace"], "tags": ["B-PER", "I-PER"], "lang": "en"},
            {"words": 1, "tokens": ["Kigali"], "tags": ["B-LOC"], "lang": "rw"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = read_tagged_file(path)
    assert data["lang"] == ["en", "rw"] and data["tokens"][1] == ["Kigali"]
    tasks = tagging_tasks_from_dataset(data)
    assert set(tasks) == {"en", "rw"} and tasks["en"].label_map.names == ("B-LOC", "B-PER", "I-PER")


def test_hf_dataset_folder_with_classlabel_tags(tmp_path):
    names = ["O", "B-PER", "I-PER"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))})
    split = Dataset.from_dict({"tokens": [["Ada", "Lovelace", "wrote"]], "ner_tags": [[1, 2, 0]]}, features=features)
    DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "en"))
    data = read_tagged_hf(tmp_path / "en", split="validation", columns=TagColumns(tags="ner_tags"), lang="en")
    assert data["tags"] == [["B-PER", "I-PER", "O"]]
    with pytest.raises(DataError, match="no split 'test'"):
        read_tagged_hf(tmp_path / "en", split="test", columns=TagColumns(tags="ner_tags"), lang="en")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("a.conll", "EU B-ORG\nrejects\n", r"a.conll:2: expected a word in column 0 and a tag in column -1, got 1"),
    ("b.conllu", "1\tx\n", r"b.conllu:1: expected a word in column 1 and a tag in column 3, got 2"),
    ("c.jsonl", '{"tokens": ["a", "b"], "tags": ["O"], "lang": "en"}\n', r"c.jsonl:1: 2 words but 1 tags"),
    ("d.jsonl", '{"tokens": "a b", "tags": ["O"], "lang": "en"}\n', r"d.jsonl:1: columns 'tokens' and 'tags' must be lists"),
    ("e.jsonl", '{"tokens": ["a"], "lang": "en"}\n', r"e.jsonl:1: missing column 'tags'"),
    ("f.csv", "a,b\n", r"unsupported file type '.csv' for tagging"),
    ("g.conll", "\n\n", r"g.conll: empty file"),
])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        read_tagged_file(tmp_path / name, lang="en")
    assert "\n" not in str(err.value)


def test_conll_needs_a_language(tmp_path):
    (tmp_path / "x.conll").write_text(CONLL, encoding="utf-8")
    with pytest.raises(DataError, match="pass a language"):
        read_tagged_file(tmp_path / "x.conll")


def test_unseen_tag_names_language_and_sentence(tmp_path):
    (tmp_path / "x.conll").write_text(CONLL, encoding="utf-8")
    data = read_tagged_file(tmp_path / "x.conll", lang="en")
    with pytest.raises(DataError, match="language en, sentence 0: unseen label 'B-ORG'"):
        tagging_tasks_from_dataset(data, tag_map(["O", "B-PER", "I-PER", "B-MISC"]))


def _ner_task():
    words = [["a", "b"]] * 10
    tags = [["B-PER", "O"]] * 6 + [["B-LOC", "O"]] * 2 + [["O", "O"]] * 2
    from datasets import Dataset as D

    return tagging_tasks_from_dataset(D.from_dict({"tokens": words, "tags": tags, "lang": ["en"] * 10}))["en"]


def test_sentence_episodes_are_disjoint_and_reproducible():
    task = _ner_task()
    a = SentenceEpisodeSampler({"en": task}, k_shot=3, k_query=4, seed=1)
    b = SentenceEpisodeSampler({"en": task}, k_shot=3, k_query=4, seed=1)
    ea, eb = a.sample(), b.sample()
    assert len(ea.support_texts) == 3 and len(ea.query_texts) == 4
    assert ea.support_labels == eb.support_labels and ea.query_labels == eb.query_labels
    with pytest.raises(DataError, match="10 sentences, fewer than the 12"):
        SentenceEpisodeSampler({"en": task}, k_shot=6, k_query=6, seed=0)


def test_k_shot_per_entity_type_covers_every_type():
    task = _ner_task()
    ids = sample_k_sentences(task, 2, seed=0, per_entity=True)
    found = {}
    for i in ids:
        for t, n in task.mentions(i).items():
            found[t] = found.get(t, 0) + n
    assert found["PER"] >= 2 and found["LOC"] >= 2
    episode = SentenceEpisodeSampler({"en": task}, k_shot=1, k_query=2, seed=0, per_entity=True).sample()
    tags = {task.label_map.names[i] for row in episode.support_labels for i in row}
    assert {"B-PER", "B-LOC"} <= tags
    assert len(sample_k_sentences(task, 3, seed=0)) == 3
