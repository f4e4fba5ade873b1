"""Source-language attention: a distribution over the bank, leave-one-out, gradients, save/load."""

from __future__ import annotations

import pytest
import torch
from peft import PeftConfig

from tests.conftest import TOY_WORDS, toy_rows
from xmeta import XMetaForSequenceClassification
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch

SOURCES = ["aa", "bb", "cc"]
TEXTS = ["cat dog", "rice soup", "train road map"]


def _model(tiny_encoder_dir, source_attention: bool = True, top_k: int = 0):
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(
        list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4, lora_layers=1, classifier_dropout=0.0,
        source_languages=SOURCES, source_attention=source_attention, attention_top_k=top_k)
    if source_attention:
        model.components["source_attention"].init_keys(model, {lang: [r["text"] for r in toy_rows(lang, 2, 0)] for lang in SOURCES})
    return model


def _fill_bank(model) -> None:
    """Give every source its own inner-loop result, as meta-training does."""
    for i, lang in enumerate(SOURCES):
        rows = toy_rows(lang, 3, i)
        batch = LabelledBatch.build(model, [r["text"] for r in rows], [model.config.label2id[r["label"]] for r in rows])
        model.remember_source(lang, InnerLoop(lr=0.5, steps=3).run(model, batch))


def _batch(model, lang: str, seed: int) -> LabelledBatch:
    rows = toy_rows(lang, 2, seed)
    return LabelledBatch.build(model, [r["text"] for r in rows], [model.config.label2id[r["label"]] for r in rows])


@pytest.mark.parametrize("top_k", [0, 2])
def test_weights_are_a_distribution_and_own_language_gets_zero(tiny_encoder_dir, top_k):
    model = _model(tiny_encoder_dir, top_k=top_k)
    attention = model.source_transfer.attention
    with attention.recording() as seen, torch.no_grad():
        model(**model.encode(TEXTS))
        with model.transferring_into("bb"):
            model(**model.encode(TEXTS))
    per_pass = len(seen) // 2
    for layer, weights in seen:
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-6)
        assert (weights >= 0).all()
        if top_k:
            assert ((weights > 0).sum(-1) <= top_k).all()
    for _, weights in seen[per_pass:]:
        assert torch.all(weights[..., SOURCES.index("bb")] == 0)


def test_gradients_reach_query_keys_temperature_but_not_the_bank(tiny_encoder_dir):
    model = _model(tiny_encoder_dir)
    _fill_bank(model)
    bank_before = {n: b.clone() for n, b in model.source_transfer.bank.named_buffers()}
    episodes = [("aa", _batch(model, "aa", 5), _batch(model, "aa", 6))]
    FirstOrderMAML(model, InnerLoop(lr=0.3, steps=2)).meta_gradient(episodes)
    attention = model.source_transfer.attention
    for name, p in attention.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(b.requires_grad for b in model.source_transfer.bank.buffers())
    assert all(".meta." in n for n in model.fast_parameters())
    # after the episode, only the episode's own slot is refreshed (moving average of inner-loop results)
    for name, b in model.source_transfer.bank.named_buffers():
        assert not torch.equal(b[0], bank_before[name][0]), name
        assert torch.equal(b[1:], bank_before[name][1:]), name


def test_switched_off_equals_the_plain_model(tiny_encoder_dir):
    plain = _model(tiny_encoder_dir, source_attention=False)
    assert plain.source_transfer is None
    with_attention = _model(tiny_encoder_dir)
    assert torch.equal(plain.predict_proba(TEXTS), with_attention.predict_proba(TEXTS))  # empty bank adds 0
    _fill_bank(with_attention)
    assert not torch.equal(plain.predict_proba(TEXTS), with_attention.predict_proba(TEXTS))


def test_save_load_restores_identical_logits_and_bank_is_peft(tiny_encoder_dir, tmp_path):
    model = _model(tiny_encoder_dir)
    _fill_bank(model)
    with torch.no_grad():
        model.source_transfer.attention.log_tau.fill_(0.3)
    model.adapt([(r["text"], r["label"]) for r in toy_rows("yo", 2, 0)], lang="yo", steps=2)
    model.save_pretrained(tmp_path / "m")
    for lang in SOURCES:
        assert PeftConfig.from_pretrained(str(tmp_path / "m" / "bank" / lang)).r == 4
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    for lang in ("meta", "yo"):
        assert torch.equal(loaded.predict_proba(TEXTS, lang=lang), model.predict_proba(TEXTS, lang=lang))


def test_cli_meta_train_with_attention_then_explain(tmp_path, tiny_encoder_dir, toy_jsonl, capsys):
    from xmeta.cli import main

    train = toy_jsonl(SOURCES, per_class=8, name="train.jsonl")
    few = toy_jsonl(["yo"], per_class=2, seed=3, name="yo.jsonl")
    texts = tmp_path / "yo.txt"
    texts.write_text("cat dog\nrice soup\ntrain map\n", encoding="utf-8")
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(tmp_path / "m"),
                 "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2",
                 "--lora_layers", "1", "--source_attention", "on", "--adapt_steps", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "m" / "bank").iterdir()) == SOURCES
    assert main(["adapt", "--model", str(tmp_path / "m"), "--lang", "yo", "--train", str(few), "--out", str(tmp_path / "yo")]) == 0
    capsys.readouterr()
    assert main(["explain", "--model", str(tmp_path / "yo"), "--file", str(texts), "--out", str(tmp_path / "ex")]) == 0
    table = capsys.readouterr().out
    assert "| aa |" in table and "| cc |" in table
    profile = __import__("json").loads((tmp_path / "ex" / "explain.json").read_text())
    assert profile["adapter"] == "yo" and abs(sum(profile["attention"]) - 1) < 1e-4
    assert (tmp_path / "ex" / "source_attention.png").stat().st_size > 0


def test_task_embeddings_ignore_the_bank(tiny_encoder_dir):
    """Task embeddings describe the language through the plain encoder, whatever the bank holds."""
    model = _model(tiny_encoder_dir)
    before = model.source_transfer.attention.task_embeddings.clone()
    _fill_bank(model)
    model.components["source_attention"].init_keys(model, {lang: [r["text"] for r in toy_rows(lang, 2, 0)] for lang in SOURCES})
    assert torch.equal(model.source_transfer.attention.task_embeddings, before)


def test_export_is_refused_with_one_line_and_writes_nothing(tiny_encoder_dir, tmp_path):
    from xmeta.errors import ArgumentError

    model = _model(tiny_encoder_dir)
    _fill_bank(model)
    with pytest.raises(ArgumentError, match="--source_attention off"):
        model.export_merged(tmp_path / "plain")
    assert not (tmp_path / "plain").exists()
