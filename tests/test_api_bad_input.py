"""The Python API's side of the bad-input catalogue (issue #17): the same checks as the CLI, the
same default language as `xmeta predict`, no silent wrong answers, no leftovers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from tests.conftest import TOY_WORDS, toy_rows
from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, LabelMap, LanguageTask
from xmeta.data.sampler import episode_languages
from xmeta.errors import ArgumentError, DataError, ModelFolderError, XMetaWarning
from xmeta.meta import MetaTrainer, MetaTrainingArguments

TEXTS = ["cat dog", "rice soup tea", "train road", "owl xyz"]
LABELS = LabelMap(tuple(TOY_WORDS))


def _examples(lang: str, per_class: int = 3) -> list[tuple[str, str]]:
    return [(r["text"], r["label"]) for r in toy_rows(lang, per_class, 0)]


def _adapted(model, lang: str = "yo"):
    model.adapt(_examples(lang), lang=lang, steps=3, lr=0.5)
    return model


@pytest.mark.parametrize("bad, culprit", [((None, "food"), "example 1: empty text"),
                                          (("", "food"), "example 1: empty text"),
                                          ((" ", "food"), "example 1: empty text"),
                                          ((7, "food"), "example 1: text must be a string"),
                                          (("tea", None), "example 1: empty label")])
def test_adapt_refuses_what_the_readers_refuse(tiny_model, bad, culprit):
    with pytest.raises(DataError, match=culprit):
        tiny_model.adapt([("cat", "animal"), bad, ("car", "travel")], lang="yo")
    assert tiny_model.languages() == []


@pytest.mark.parametrize("texts", [[None], ["cat", ""], [("cat", None)]])
def test_predict_refuses_empty_texts_naming_the_index(tiny_model, texts):
    with pytest.raises(DataError, match=f"example {len(texts) - 1}"):
        tiny_model.predict(texts)


def test_a_single_string_is_one_text(tiny_model):
    label = tiny_model.predict("rice soup tea")
    assert isinstance(label, str) and label == tiny_model.predict(["rice soup tea"])[0]
    probs = tiny_model.predict_proba("rice soup tea")
    assert probs.shape == (len(TOY_WORDS),)
    assert torch.equal(probs, tiny_model.predict_proba(["rice soup tea"])[0])


def test_adapt_refuses_examples_missing_labels_unless_allowed(tiny_model):
    food_only = [(t, y) for t, y in _examples("yo") if y == "food"]
    with pytest.raises(DataError, match="no examples of label\\(s\\) animal, travel; .*--allow_missing_labels"):
        tiny_model.adapt(food_only, lang="yo")
    assert tiny_model.languages() == []
    result = tiny_model.adapt(food_only, lang="yo", steps=1, allow_missing_labels=True)
    assert result.examples == 3 and tiny_model.languages() == ["yo"]


def test_long_adaptations_show_a_progress_bar(tiny_model, capsys):
    tiny_model.adapt(_examples("yo"), lang="yo", steps=2, lr=0.5)
    assert "adapt yo" not in capsys.readouterr().err
    tiny_model.adapt(_examples("ha"), lang="ha", steps=30, lr=0.5)
    assert "adapt ha" in capsys.readouterr().err


def test_from_pretrained_activates_the_only_adapted_language(tiny_model, tmp_path):
    _adapted(tiny_model).save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.active_language == "yo"
    expected = loaded.predict_proba(TEXTS, lang="yo")
    assert torch.equal(loaded.predict_proba(TEXTS), expected)  # predict, forward and export all see "yo"
    with torch.no_grad():
        assert torch.allclose(loaded(**loaded.encode(TEXTS[:1])).logits.softmax(-1)[0], expected[0], atol=1e-6)
    loaded.export_merged(tmp_path / "plain")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    with torch.no_grad():
        got = plain(**tok(TEXTS[0], return_tensors="pt")).logits.softmax(-1)[0]
    assert torch.allclose(got, expected[0], atol=1e-5)
    assert XMetaForSequenceClassification.from_pretrained(tmp_path / "m", lang="meta").active_language == "meta"


def test_several_adapted_languages_default_to_theta_with_a_warning(tiny_model, tmp_path):
    _adapted(_adapted(tiny_model, "yo"), "ha").save_pretrained(tmp_path / "m")
    with pytest.warns(XMetaWarning, match="2 adapted languages \\(yo, ha\\): using θ"):
        loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.active_language == "meta"
    with warnings.catch_warnings():
        warnings.simplefilter("error", XMetaWarning)
        assert XMetaForSequenceClassification.from_pretrained(tmp_path / "m", lang="ha").active_language == "ha"


def test_re_adapting_warns_that_the_adapter_is_replaced(tiny_model):
    _adapted(tiny_model)
    with pytest.warns(XMetaWarning, match="replacing the existing adapter of 'yo'"):
        _adapted(tiny_model)


def test_save_to_a_file_is_refused_and_leaves_nothing(tiny_model, tmp_path):
    target = tmp_path / "afile.txt"
    target.write_text("mine")
    with pytest.raises(ArgumentError, match="afile.txt: is a file, not an output folder"):
        tiny_model.save_pretrained(target, overwrite=True)
    with pytest.raises(ArgumentError, match="is a file, not a folder"):
        tiny_model.save_pretrained(target / "m")
    assert target.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"]


def test_overwrite_replaces_a_folder_without_leftovers(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    tiny_model.save_pretrained(tmp_path / "m", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_corrupt_adapter_config_is_one_error(tiny_model, tmp_path):
    _adapted(tiny_model).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "adapters" / "yo" / "adapter_config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="adapters/yo/adapter_config.json: corrupt adapter config"):
        XMetaForSequenceClassification.from_pretrained(tmp_path / "m")


def test_pipeline_on_an_xmeta_folder_points_to_export_merged(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelFolderError, match="export_merged"):
        pipeline("text-classification", model=str(tmp_path / "m"))


def test_exported_pipeline_truncates_like_xmeta(tiny_model, tmp_path):
    _adapted(tiny_model)
    tiny_model.export_merged(tmp_path / "plain")
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    assert tok.model_max_length == tiny_model.config.max_length
    clf = pipeline("text-classification", model=str(tmp_path / "plain"), truncation=True)
    long_text = " ".join(["rice soup"] * 40 + ["cat dog"] * 400)  # far past max_length and the encoder's 64 positions
    assert clf(long_text)[0]["label"] == tiny_model.predict(long_text)


def _task(lang: str, rows: list[tuple[str, str]]) -> LanguageTask:
    return LanguageTask(lang, [t for t, _ in rows], LABELS.encode([y for _, y in rows], lang), LABELS)


def test_unusable_source_languages_are_skipped_with_one_warning_each():
    good = _task("aa", _examples("aa", 4))
    unique = [(f"{text} {i}", label) for i, (text, label) in enumerate(_examples("cc", 4))]
    tasks = {"aa": good, "one_row": _task("one_row", [("cat", "animal")]),
             "one_class": _task("one_class", [(f"cat {i}", "animal") for i in range(8)]),
             "conflict": _task("conflict", unique + [(unique[0][0], "travel" if unique[0][1] != "travel" else "food")])}
    with pytest.warns(XMetaWarning) as caught:
        kept = episode_languages(tasks, None, 2, 2)
    messages = [str(w.message) for w in caught]
    assert list(kept) == ["aa", "conflict"] and kept["aa"] is good
    assert len(kept["conflict"]) == len(unique) - 1 and unique[0][0] not in kept["conflict"].texts
    assert f"language conflict: dropped 2 rows whose text has conflicting labels (e.g. {unique[0][0]!r})" in messages
    for lang in ("one_row", "one_class"):
        assert any(m.startswith(f"skipping source language {lang}:") for m in messages), messages
    with pytest.raises(DataError, match="language one_row: only 0 label\\(s\\) have >= 4 examples"):
        episode_languages({"one_row": tasks["one_row"]}, None, 2, 2)


def test_dev_episodes_shrink_to_the_languages_there_are(tiny_model):
    tasks = {lang: _task(lang, _examples(lang, 4)) for lang in ("aa", "bb", "cc")}
    args = MetaTrainingArguments(steps=1, meta_batch=2, k_shot=2, k_query=2, inner_steps=1, eval_every=1, seed=0)
    assert args.dev_episodes > 3
    trainer = MetaTrainer(tiny_model, EpisodeSampler(tasks, None, 2, 2, seed=0), args,
                          dev_sampler=EpisodeSampler(tasks, None, 2, 2, seed=1))
    assert len(trainer.dev) == 3
    assert trainer.train()[-1].dev_accuracy is not None


def test_save_refuses_an_unwritable_parent(tiny_model, tmp_path, monkeypatch):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(ArgumentError, match=f"cannot write in {tmp_path}"):
        tiny_model.save_pretrained(tmp_path / "m")
    assert not any(tmp_path.iterdir())


def test_labelled_examples_keep_pairs_and_dicts(tiny_model):
    texts, labels = tiny_model.labelled_examples([("a cat", "a dog", "animal"), {"text": "tea", "label": "food"}], "x")
    assert texts == [("a cat", "a dog"), "tea"] and labels == [0, 1]


@pytest.mark.real
def test_four_sources_meta_train_and_api_agrees_with_cli_on_the_real_encoder(tmp_path, capsys):
    """Fewer than 8 sources meta-train with the defaults (dev episodes shrink); after a fresh
    `from_pretrained` the README's Python snippet labels as `xmeta predict` does, and the exported
    pipeline with truncation gives xmeta's label on a text far past max_length."""
    from xmeta.cli import main

    assert main(["meta-train", "--task", "cldr-emoji", "--sources", "en,de,fr,es", "--out", str(tmp_path / "m"),
                 "--steps", "1", "--k_shot", "2", "--k_query", "2", "--inner_steps", "1"]) == 0
    assert main(["adapt", "--model", str(tmp_path / "m"), "--lang", "yo", "--shots", "2", "--steps", "2",
                 "--out", str(tmp_path / "yo")]) == 0
    texts = ["ẹja | ẹja", "ọkọ̀ ayọ́kẹ́lẹ́", "ọkọ̀ ofurufu", " ".join(["oúnjẹ"] * 300)]
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "yo"), "--text", *texts]) == 0
    cli = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    model = XMetaForSequenceClassification.from_pretrained(tmp_path / "yo")
    assert model.predict(texts) == cli
    model.export_merged(tmp_path / "plain")
    clf = pipeline("text-classification", model=str(tmp_path / "plain"), truncation=True)
    assert [r["label"] for r in clf(texts)] == cli
