"""Hub task cards (wikiann, xnli, ...) read offline from local folders in the hub layout."""

from __future__ import annotations

from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from xmeta.data import LanguageTask, TaggingTask, load_language_tasks, load_task_card
from xmeta.data.readers import load_hf_split


def test_wikiann_card_reads_a_local_copy(tmp_path):
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names)),
                         "langs": List(Value("string")), "spans": List(Value("string"))})
    for lang in ("de", "yo"):
        rows = {"tokens": [["Olú", "ní", "Èkó"]], "ner_tags": [[1, 0, 5]], "langs": [[lang] * 3], "spans": [["PER: Olú"]]}
        split = Dataset.from_dict(rows, features=features)
        DatasetDict({"train": split, "validation": split, "test": split}).save_to_disk(str(tmp_path / lang))
    card = load_task_card("wikiann").with_source_options(local_dir=tmp_path)
    tasks = load_language_tasks(card, ["de", "yo"], "dev")
    assert isinstance(tasks["yo"], TaggingTask) and tasks["yo"].tags(0) == ["B-PER", "O", "B-LOC"]


def test_xnli_card_reads_pairs_from_a_local_copy(tmp_path):
    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    split = Dataset.from_dict({"premise": ["Ein Hund bellt."], "hypothesis": ["Ein Tier macht Lärm."], "label": [0]},
                              features=features)
    DatasetDict({"train": split, "validation": split, "test": split}).save_to_disk(str(tmp_path / "de"))
    tasks = load_language_tasks(load_task_card("xnli").with_source_options(local_dir=tmp_path), ["de"], "test")
    assert isinstance(tasks["de"], LanguageTask)
    assert tasks["de"].texts == [("Ein Hund bellt.", "Ein Tier macht Lärm.")] and tasks["de"].labels == [0]


def test_every_shipped_card_parses_with_real_hub_ids():
    ids = {name: load_task_card(name).source_options.get("dataset")
           for name in ("wikiann", "xnli", "paws-x", "sib200", "ud-upos", "massive")}
    assert ids["wikiann"] == "unimelb-nlp/wikiann" and ids["xnli"] == "facebook/xnli"
    assert ids["paws-x"] == "google-research-datasets/paws-x" and ids["sib200"] == "Davlan/sib200"
    assert load_task_card("wikiann").kind == "token-classification"
    assert ids["ud-upos"] == "universal-dependencies/universal_dependencies" and ids["massive"] == "AmazonScience/massive"


def _parquet_export(root, config: str, features: Features, rows: dict) -> None:
    """One config of a hub parquet export (``refs/convert/parquet``): ``<config>/<split>/0000.parquet``."""
    for split in ("train", "validation", "test"):
        (root / config / split).mkdir(parents=True)
        Dataset.from_dict(rows, features=features).to_parquet(str(root / config / split / "0000.parquet"))


def test_script_datasets_read_their_parquet_export():
    """MASSIVE and UD hold loading scripts that datasets >= 4 does not run: both cards name the export."""
    for name in ("massive", "ud-upos"):
        options = load_task_card(name).source_options
        assert options["revision"] == "refs/convert/parquet" and options["data_dir"] == "{lang}"


def test_massive_card_reads_a_local_copy_of_the_parquet_export(tmp_path):
    card = load_task_card("massive").with_source_options(local_dir=tmp_path)
    assert len(card.labels) == 60 and {"alarm_set", "weather_query", "qa_currency"} <= set(card.labels)
    features = Features({"id": Value("string"), "locale": Value("string"), "utt": Value("string"),
                         "intent": ClassLabel(names=list(card.labels))})
    rows = {"id": ["1", "2"], "locale": ["am-ET"] * 2, "utt": ["ማንቂያ አዘጋጅ", "የአየር ሁኔታ"],
            "intent": [card.labels.index("alarm_set"), card.labels.index("weather_query")]}
    _parquet_export(tmp_path, "am-ET", features, rows)
    task = load_language_tasks(card, ["am-ET"], "dev")["am-ET"]
    assert task.texts == rows["utt"] and [card.labels[i] for i in task.labels] == ["alarm_set", "weather_query"]


def test_data_dir_picks_one_config_of_an_export(tmp_path):
    labels = list(load_task_card("ud-upos").labels)
    features = Features({"tokens": List(Value("string")), "upos": List(ClassLabel(names=labels))})
    for config, word in (("en_ewt", "dog"), ("wo_wtb", "xaj")):
        _parquet_export(tmp_path, config, features, {"tokens": [[word, "."]], "upos": [[0, 1]]})
    dataset, origin = load_hf_split(tmp_path, split="test", data_dir="wo_wtb")
    assert dataset["tokens"] == [["xaj", "."]] and origin.endswith("wo_wtb[test]")
    card = load_task_card("ud-upos").with_source_options(local_dir=tmp_path)
    assert load_language_tasks(card, ["wo_wtb"], "train")["wo_wtb"].tags(0) == ["NOUN", "PUNCT"]
