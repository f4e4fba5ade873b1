"""Romanisation (uroman): the real romaniser, the per-language decision, one preprocessing for every step
(adapt, predict, few-shot evaluation with scratch adapters), config round trip, export and `xmeta coverage`."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import TOY_WORDS
from tests.test_cli import run_error
from xmeta import XMetaForSequenceClassification, exported_inputs
from xmeta.cli import main
from xmeta.data import LabelMap, LanguageTask
from xmeta.data.romanize import (latin_share, romanization_needed, romanize_string, romanize_targets, romanize_text,
                                 romanize_texts, romanized_copies)
from xmeta.evaluation import few_shot_evaluation

CHEROKEE = {"animal": ["ᎦᏬᏂᎯᏍᏗ ᏣᎳᎩ", "ᏣᎳᎩ ᎠᏓᏅᏙ"], "food": ["ᎤᏃᏴᎩ ᏔᎵᎭ", "ᏔᎵᎭ ᎪᏪᎸ"], "travel": ["ᏇᏂᎩ ᎠᎪᏪᎳ", "ᎠᎪᏪᎳ ᏍᏓᏱ"]}
LABELS = list(TOY_WORDS)


def _model(tiny_encoder_dir, romanize: str = "auto"):
    torch.manual_seed(0)
    return XMetaForSequenceClassification.for_labels(LABELS, encoder=str(tiny_encoder_dir), lora_r=4, max_length=32,
                                                     classifier_dropout=0.0, romanize=romanize)


def _examples(romanized: bool = False) -> list[tuple[str, str]]:
    return [(romanize_string(t) if romanized else t, label) for label, texts in CHEROKEE.items() for t in texts]


def _task(lang: str, rows: list[tuple[str, str]]) -> LanguageTask:
    label_map = LabelMap(tuple(LABELS))
    return LanguageTask(lang, [t for t, _ in rows], label_map.encode([y for _, y in rows], lang), label_map)


def test_uroman_romanizes_cherokee_and_amharic():
    assert romanize_string("ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ") == "tsalagi gawonihisdi"
    assert romanize_string("ሰላም") == "salaame"
    assert romanize_string("grinning face | smile") == "grinning face | smile"  # Latin stays as it is
    assert romanize_string(romanize_string("ᏣᎳᎩ")) == romanize_string("ᏣᎳᎩ")  # idempotent
    assert romanize_text(("ᏣᎳᎩ", "ሰላም")) == ("tsalagi", "salaame")  # a pair, part by part
    assert romanize_text(["ᏣᎳᎩ", "|", "ሰላም"]) == ["tsalagi", "|", "salaame"]  # tagging: word by word


def test_romanized_copies_of_sources_in_other_scripts():
    """A source whose letters are mostly not Latin gets a ``-Latn`` copy with the same rows, labels and items,
    its texts romanised; an accented Latin language (uroman would strip its accents) gets none."""
    cyrillic = _task("ru", [("кошка | собака", "animal"), ("суп", "food"), ("поезд", "travel")])
    french = _task("fr", [("chat | chèvre", "animal"), ("pâté", "food"), ("métro", "travel")])
    cherokee = _task("chr", [(t, label) for label, texts in CHEROKEE.items() for t in texts])
    assert latin_share(french.texts) == 1.0 and latin_share(cyrillic.texts) == 0.0 and latin_share(["| 4 !"]) == 1.0
    copies = romanized_copies({"ru": cyrillic, "fr": french, "chr": cherokee})
    assert list(copies) == ["ru-Latn", "chr-Latn"]
    ru = copies["ru-Latn"]
    assert ru.lang == "ru-Latn" and ru.labels == cyrillic.labels and ru.item_ids == cyrillic.item_ids
    assert ru.texts == ["koshka | sobaka", "sup", "poezd"] and cyrillic.texts[0] == "кошка | собака"  # the original kept
    assert copies["chr-Latn"].texts[0] == "gawonihisdi tsalagi"


def test_auto_romanizes_unk_heavy_text_only(tiny_encoder_dir):
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    cherokee = [t for texts in CHEROKEE.values() for t in texts]
    assert romanization_needed("auto", tok, "chr", cherokee)
    assert not romanization_needed("auto", tok, "en", ["cat dog", "rice soup"])
    assert not romanization_needed("auto", tok, "chr", romanize_texts(cherokee))  # romanised: the letters are known
    assert romanization_needed("on", tok, "en", ["cat"]) and not romanization_needed("off", tok, "chr", cherokee)
    with pytest.raises(Exception, match="--romanize"):
        romanization_needed("maybe", tok, "chr", cherokee)


def test_adapt_and_predict_read_the_language_romanised(tiny_encoder_dir, tmp_path):
    """Raw Cherokee through a model that romanises = pre-romanised text through one that does not."""
    auto, off = _model(tiny_encoder_dir, "auto"), _model(tiny_encoder_dir, "off")
    auto.adapt(_examples(), lang="chr", steps=3)
    off.adapt(_examples(romanized=True), lang="chr", steps=3)
    assert auto.config.romanized_languages == ["chr"] and off.config.romanized_languages == []
    raw = [t for texts in CHEROKEE.values() for t in texts] + ["ᎠᏓᏅᏙ ᏍᏓᏱ"]
    expected = off.predict_proba(romanize_texts(raw), lang="chr")
    assert torch.allclose(auto.predict_proba(raw, lang="chr"), expected, atol=1e-6)
    assert not torch.allclose(off.predict_proba(raw, lang="chr"), expected, atol=1e-3)  # romanising changes the input
    # a well-covered language is left alone by auto
    auto.adapt([(w, label) for label, words in TOY_WORDS.items() for w in words[:2]], lang="en", steps=1)
    assert auto.config.romanized_languages == ["chr"]
    # the decision and the setting travel with the model
    auto.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.config.romanize == "auto" and loaded.config.romanized_languages == ["chr"]
    assert torch.allclose(loaded.predict_proba(raw, lang="chr"), expected, atol=1e-6)


def test_scratch_adapters_follow_the_language_not_their_name(tiny_encoder_dir):
    """Few-shot evaluation adapts "chr_eval" and scores θ (K=0): the texts' language decides."""
    rows = _examples()
    auto, off = _model(tiny_encoder_dir, "auto"), _model(tiny_encoder_dir, "off")
    got = few_shot_evaluation(auto, _task("chr", rows), _task("chr", rows), [0, 1], [0], adapt_steps=2)
    romanized = [(romanize_string(t), y) for t, y in rows]
    want = few_shot_evaluation(off, _task("chr", romanized), _task("chr", romanized), [0, 1], [0], adapt_steps=2)
    assert [r.scores for r in got.runs] == [r.scores for r in want.runs]
    assert auto.config.romanized_languages == ["chr"] and auto.languages() == []  # the scratch adapter is gone


def test_benchmark_romanizes_a_target_for_every_method(tiny_encoder_dir):
    train = {"chr": _task("chr", _examples()), "en": _task("en", [("cat dog", "animal"), ("rice", "food")])}
    test = {lang: task.subset([0]) for lang, task in train.items()}
    assert romanize_targets(train, test, "auto", str(tiny_encoder_dir)) == ["chr"]
    assert train["chr"].texts[0] == romanize_string(CHEROKEE["animal"][0]) and test["chr"].texts == train["chr"].texts[:1]
    assert train["en"].texts == ["cat dog", "rice"]
    assert romanize_targets(train, test, "off", str(tiny_encoder_dir)) == []


def test_export_of_a_romanised_language(tiny_encoder_dir, tmp_path, capsys):
    model = _model(tiny_encoder_dir)
    model.adapt(_examples(), lang="chr", steps=3)
    model.save_pretrained(tmp_path / "m")
    model.export_merged(tmp_path / "plain", lang="chr")
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["romanize"] is True
    assert "romanize_string" in (tmp_path / "plain" / "README.md").read_text()
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    raw = ["ᎦᏬᏂᎯᏍᏗ ᏣᎳᎩ", "ᏔᎵᎭ ᎪᏪᎸ ᏍᏓᏱ"]
    expected = model.predict_proba(raw, lang="chr")
    for i, text in enumerate(exported_inputs(tmp_path / "plain", raw)):
        with torch.no_grad():
            got = plain(**tok(text, return_tensors="pt")).logits.softmax(-1)[0]
        assert torch.allclose(got, expected[i], atol=1e-5)
    # xmeta predict: the same label and score through the model folder and through the export
    assert main(["predict", "--model", str(tmp_path / "m"), "--text", *raw]) == 0
    ours = capsys.readouterr().out
    assert main(["predict", "--model", str(tmp_path / "plain"), "--text", *raw]) == 0
    assert capsys.readouterr().out == ours
    model.adapt([(w, label) for label, words in TOY_WORDS.items() for w in words[:2]], lang="en", steps=1)
    model.export_merged(tmp_path / "plain-en", lang="en")
    assert json.loads((tmp_path / "plain-en" / "config.json").read_text())["romanize"] is False
    assert exported_inputs(tmp_path / "plain-en", raw) == raw


def test_coverage_prints_unk_share_before_and_after_romanisation(tiny_encoder_dir, tmp_path, capsys):
    texts = tmp_path / "chr.txt"
    texts.write_text("\n".join(t for ts in CHEROKEE.values() for t in ts) + "\n", encoding="utf-8")
    assert main(["coverage", "--file", str(texts), "--lang", "chr", "--encoder", str(tiny_encoder_dir)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| chr |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[3].rstrip("%")) > 5 and cells[4] == "0.0%" and cells[6] == "on"  # <unk> before, none after
    assert "--romanize auto" in out
    assert "--romanize" in run_error(capsys, ["meta-train", "--out", str(tmp_path / "x"), "--romanize", "maybe"])


@pytest.mark.real
def test_real_encoder_decides_chr_on_and_well_covered_targets_off():
    """CLDR chr is 80% <unk> under multilingual-e5-small: auto romanises it; yo, am and zu stay as they are."""
    from xmeta.data import load_language_tasks, load_task_card

    card = load_task_card("cldr-emoji")
    tasks = load_language_tasks(card, ["chr", "yo", "am", "zu"], "train")
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, romanize="auto")
    assert [lang for lang, task in tasks.items() if model.decide_romanization(lang, task.texts)] == ["chr"]
    raw = tasks["chr"].texts[:4]
    unk = model.tokenizer.unk_token_id
    assert (model.encode(raw)["input_ids"] == unk).any()
    assert not (model.encode(raw, language="chr")["input_ids"] == unk).any()
    assert torch.equal(model.predict_proba(raw, lang="meta", language="chr"),
                       model.predict_proba(romanize_texts(raw), lang="meta"))


@pytest.mark.real
def test_romanized_copies_meta_train_the_real_encoder(tmp_path):
    """`meta-train --romanized_copies on` on de and ru: θ meta-trains on ru-Latn too (a source language of the
    saved model), and a chr adaptation reads Cherokee romanised, as the copies taught."""
    assert main(["meta-train", "--out", str(tmp_path / "m"), "--task", "cldr-emoji", "--sources", "de,ru",
                 "--romanized_copies", "on", "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2",
                 "--inner_steps", "1", "--lora_r", "2", "--lora_layers", "1", "--eval_every", "0"]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["source_languages"] == ["de", "ru", "ru-Latn"] and config["romanized_languages"] == []
    assert main(["adapt", "--model", str(tmp_path / "m"), "--task", "cldr-emoji", "--lang", "chr", "--shots", "2",
                 "--out", str(tmp_path / "chr")]) == 0
    assert "chr" in json.loads((tmp_path / "chr" / "config.json").read_text())["romanized_languages"]
