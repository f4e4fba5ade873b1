"""Sentence-pair classification (NLI-style text + text_pair): reader, meta-training, adapt, save/load, export."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from tests.conftest import TOY_WORDS
from xmeta import XMetaForSequenceClassification
from xmeta.data import Columns, EpisodeSampler, read_file, tasks_from_dataset
from xmeta.errors import DataError
from xmeta.meta import MetaTrainer, MetaTrainingArguments


def pair_rows(lang: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    """Premise and hypothesis from the same toy class -> "same", else "different"."""
    rng = random.Random(f"{lang}-{seed}")
    kinds = list(TOY_WORDS)
    rows = []
    for i in range(n):
        a = rng.choice(kinds)
        b = a if i % 2 == 0 else rng.choice([k for k in kinds if k != a])
        rows.append({"premise": f"{rng.choice(TOY_WORDS[a])} {lang}", "hypothesis": rng.choice(TOY_WORDS[b]),
                     "label": "same" if a == b else "different", "lang": lang})
    return rows


@pytest.fixture
def pair_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [r for lang in ("de", "fr", "yo") for r in pair_rows(lang, 16)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reader_keeps_pairs_and_names_empty_second_text(pair_file, tmp_path):
    columns = Columns(text="premise", text_pair="hypothesis")
    tasks = tasks_from_dataset(read_file(pair_file, columns))
    assert isinstance(tasks["de"].texts[0], tuple) and len(tasks["de"].texts[0]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"premise": "cat", "hypothesis": " ", "label": "same", "lang": "de"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: empty text in column 'hypothesis'"):
        read_file(bad, columns)


def test_pair_classification_end_to_end(pair_file, tiny_encoder_dir, tmp_path):
    tasks = tasks_from_dataset(read_file(pair_file, Columns(text="premise", text_pair="hypothesis")))
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(tasks["de"].label_map.names, encoder=str(tiny_encoder_dir),
                                                      lora_r=4, max_length=32)
    inputs = model.encode([("cat", "dog"), ("rice", "train")])
    assert (inputs["input_ids"] == model.tokenizer.sep_token_id).sum() >= 4  # both texts, one sequence
    sources = {lang: tasks[lang] for lang in ("de", "fr")}
    args = MetaTrainingArguments(steps=2, meta_batch=2, k_shot=2, k_query=2, inner_steps=2, eval_every=0)
    history = MetaTrainer(model, EpisodeSampler(sources, None, 2, 2, seed=0), args).train()
    assert len(history) == 2
    yo = tasks["yo"]
    examples = [{"text": a, "text_pair": b, "label": yo.label_map.names[y]} for (a, b), y in zip(yo.texts[:8], yo.labels[:8])]
    model.adapt(examples, lang="yo", steps=5, lr=0.5)
    pairs = yo.texts[8:12]
    assert set(model.predict(pairs, lang="yo")) <= {"same", "different"}
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.predict_proba(pairs, lang="yo"), model.predict_proba(pairs, lang="yo"))
    model.export_merged(tmp_path / "plain", lang="yo")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    expected = model.predict_proba(pairs, lang="yo").log()
    for (a, b), row in zip(pairs, expected):
        plain_inputs = tok(a, b, return_tensors="pt")
        assert plain_inputs["input_ids"].tolist() == model.encode([(a, b)])["input_ids"].tolist()
        with torch.no_grad():
            assert torch.allclose(plain(**plain_inputs).logits.log_softmax(-1)[0], row, atol=1e-5)
    clf = pipeline("text-classification", model=plain, tokenizer=tok)
    assert [clf({"text": a, "text_pair": b})["label"] for a, b in pairs] == model.predict(pairs, lang="yo")


def test_pairs_and_single_texts_do_not_mix(tiny_encoder_dir):
    model = XMetaForSequenceClassification.for_labels(["a", "b"], encoder=str(tiny_encoder_dir))
    with pytest.raises(DataError, match="mixes single texts and"):
        model.encode(["cat", ("cat", "dog")])


@pytest.mark.real
def test_pair_classification_on_the_real_encoder(tmp_path):
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(["entailment", "neutral", "contradiction"], max_length=48)
    examples = [("Ein Mann spielt Gitarre.", "Ein Mensch macht Musik.", "entailment"),
                ("Ein Mann spielt Gitarre.", "Der Mann schläft.", "contradiction"),
                ("Eine Frau liest.", "Die Frau liest einen Roman.", "neutral")]
    result = model.adapt(examples, lang="de", steps=3, lr=0.05)
    assert result.examples == 3 and result.support_loss > 0
    pairs = [(a, b) for a, b, _ in examples]
    model.export_merged(tmp_path / "plain", lang="de")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    expected = model.predict_proba(pairs, lang="de").log()
    for (a, b), row in zip(pairs, expected):
        assert tok(a, b)["input_ids"] == model.encode([(a, b)])["input_ids"][0].tolist()
        with torch.no_grad():
            got = plain(**tok(a, b, return_tensors="pt")).logits.log_softmax(-1)[0]
        assert (got - row).abs().max().item() < 1e-4
