"""Tagging through the whole CLI with source attention (final bank, explain) and the K-shot
protocol (`xmeta evaluate --shots` on a tagging card), plus the protocol's shared report."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from tests.test_token_classification import TAGS, toy_sentences
from xmeta import XMetaForTokenClassification
from xmeta.cli import main
from xmeta.data import LabelMap, LanguageTask, TaggingTask, tag_map
from xmeta.evaluation import (
    LanguageEvaluation,
    ShotResult,
    few_shot_evaluation,
    markdown_table,
    write_report,
)


def _tagging_card(tmp_path, labels: list[str], lang: str) -> str:
    """A token-classification card over a local hub-layout copy of toy sentences of ``lang``."""
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=labels))})
    splits = {}
    for split, seed in (("train", 1), ("validation", 2), ("test", 3)):
        rows = toy_sentences(lang, 6, seed)
        splits[split] = Dataset.from_dict({"tokens": [w for w, _ in rows],
                                           "ner_tags": [[labels.index(t) for t in tags] for _, tags in rows]},
                                          features=features)
    DatasetDict(splits).save_to_disk(str(tmp_path / "hub" / lang))
    card = tmp_path / "toy-ner.yaml"
    card.write_text(f"""name: toy-ner
kind: token-classification
source: {{type: hf-datasets, dataset: toy/ner, label_column: ner_tags, local_dir: "{tmp_path / 'hub'}"}}
text: {{fields: [tokens], separator: " "}}
labels: {json.dumps(labels)}
split: {{by: hub}}
languages: {{sources: [de, fr], targets: [{lang}]}}
""", encoding="utf-8")
    return str(card)


def test_tagging_with_source_attention_bank_explain_and_k_shot_protocol(tmp_path, tiny_encoder_dir, capsys):
    train = tmp_path / "train.jsonl"
    rows = [{"tokens": w, "tags": t, "lang": lang} for lang in ("de", "fr") for w, t in toy_sentences(lang, 8)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    meta = tmp_path / "meta"
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(meta),
                 "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2",
                 "--lora_layers", "1", "--source_attention", "on", "--adapt_steps", "2"]) == 0
    assert sorted(p.name for p in (meta / "bank").iterdir()) == ["de", "fr"]
    few = tmp_path / "yo.jsonl"
    few.write_text("".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in toy_sentences("yo", 3, 1)),
                   encoding="utf-8")
    assert main(["adapt", "--model", str(meta), "--lang", "yo", "--train", str(few), "--out", str(tmp_path / "yo"),
                 "--steps", "2"]) == 0
    texts = tmp_path / "yo.txt"
    texts.write_text("cat dog xyz\nrice soup road\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["explain", "--model", str(tmp_path / "yo"), "--file", str(texts), "--out", str(tmp_path / "ex")]) == 0
    assert "| de |" in capsys.readouterr().out
    profile = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert profile["adapter"] == "yo" and abs(sum(profile["attention"]) - 1) < 1e-4

    labels = json.loads((meta / "config.json").read_text())["id2label"]
    card = _tagging_card(tmp_path, [labels[str(i)] for i in range(len(labels))], "yo")
    assert main(["evaluate", "--model", str(meta), "--lang", "yo", "--task", card, "--shots", "0,2", "--seeds", "2",
                 "--steps", "2", "--out", str(tmp_path / "shots")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "| language | K | seeds | entity F1 | token accuracy | precision | recall |"
    result = json.loads((tmp_path / "shots" / "results.json").read_text())["languages"][0]
    assert result["shot_unit"] == "sentences" and [r["k"] for r in result["runs"]] == [0, 2, 2]
    assert all(len(r["shot_ids"]) == 2 for r in result["runs"][1:]) and "f1_mean" in result["summary"]["2"]
    assert (tmp_path / "shots" / "f1_vs_shots.png").stat().st_size > 0


def test_protocol_draws_k_sentences_per_seed_and_scores_tags(tiny_encoder_dir):
    torch.manual_seed(0)
    tagger = XMetaForTokenClassification.for_labels(tag_map(TAGS).names, encoder=str(tiny_encoder_dir), lora_r=2,
                                                    max_length=32)
    labels = tag_map(TAGS)

    def task(seed: int) -> TaggingTask:
        rows = toy_sentences("yo", 6, seed)
        return TaggingTask("yo", [w for w, _ in rows], [labels.encode(t, "yo") for _, t in rows], labels)

    train, test = task(1), task(2)
    ev = few_shot_evaluation(tagger, train, test, shots=[3], seeds=[0, 1], adapt_steps=1)
    assert [r.shot_ids for r in ev.runs] == [train.shots(3, 0), train.shots(3, 1)]
    assert ev.metrics == ["f1", "token_accuracy", "precision", "recall"] and tagger.languages() == []


def test_classification_report_keeps_its_columns_and_pairs_adapt_as_pairs(tmp_path):
    ev = LanguageEvaluation("yo", 10, [ShotResult(4, s, {"accuracy": 0.5 + s / 10, "macro_f1": 0.4}) for s in (0, 1)])
    assert markdown_table([ev]).splitlines()[:3] == ["| language | K | seeds | macro-F1 | accuracy |",
                                                     "|---|---:|---:|---|---|",
                                                     "| yo | 4 | 2 | 0.400 ± 0.000 | 0.550 ± 0.050 |"]
    write_report(tmp_path / "r", [ev], {}, overwrite=False)
    run = json.loads((tmp_path / "r" / "results.json").read_text())["languages"][0]["runs"][0]
    assert run["accuracy"] == 0.5 and run["macro_f1"] == 0.4 and (tmp_path / "r" / "macro_f1_vs_shots.png").is_file()
    pairs = LanguageTask("de", [("a", "b"), ("c", "d")], [1, 0], LabelMap(("no", "yes")))
    assert pairs.examples([0, 1]) == [("a", "b", "yes"), ("c", "d", "no")]


@pytest.mark.parametrize("shots", [1, 2])
def test_bank_shots_never_exceed_what_a_language_has(shots):
    labels = tag_map(TAGS)
    rows = toy_sentences("de", 1)
    task = TaggingTask("de", [w for w, _ in rows], [labels.encode(t, "de") for _, t in rows], labels)
    assert task.shots(min(shots, task.max_shots), 0) == [0]
