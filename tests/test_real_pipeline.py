"""The whole path on the embedded multilingual-e5-small and the real CLDR data."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, load_language_tasks, load_task_card, sample_k_shot
from xmeta.meta import MetaTrainer, MetaTrainingArguments

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def card():
    return load_task_card("cldr-emoji")


@pytest.fixture(scope="module")
def meta_trained(card):
    """Two real meta-steps over three source languages (enough to move θ; not to learn much)."""
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name)
    tasks = load_language_tasks(card, ["de", "ru", "zh"], "train")
    args = MetaTrainingArguments(steps=2, meta_batch=2, k_shot=2, k_query=2, inner_steps=2, eval_every=0, seed=0)
    before = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    history = MetaTrainer(model, EpisodeSampler(tasks, None, 2, 2, seed=0), args).train()
    assert len(history) == 2 and all(h.query_loss > 0 for h in history)
    assert any(not torch.equal(before[n], p) for n, p in model.fast_parameters().items())
    return model


@pytest.fixture(scope="module")
def adapted(meta_trained, card):
    train = load_language_tasks(card, ["yo"], "train")["yo"]
    ids = sample_k_shot(train, 2, seed=0)
    result = meta_trained.adapt([(train.texts[i], card.labels[train.labels[i]]) for i in ids], lang="yo", steps=3)
    assert result.examples == 16 and result.seconds > 0
    return meta_trained


def test_lora_sits_in_every_layer_of_the_real_encoder_by_default_and_in_the_top_n_if_asked(meta_trained, card):
    lora = [n for n in meta_trained.fast_parameters() if "lora_" in n]
    assert {next(i for i in range(12) if f".layer.{i}." in n) for n in lora} == set(range(12))
    assert meta_trained.frozen_layers == 0
    top4 = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, lora_layers=4)
    lora = [n for n in top4.fast_parameters() if "lora_" in n]
    assert lora and all(any(f".layer.{i}." in n for i in (8, 9, 10, 11)) for n in lora)
    assert top4.frozen_layers == 8


def test_save_load_round_trip_on_real_encoder(adapted, card, tmp_path):
    texts = load_language_tasks(card, ["yo"], "test")["yo"].texts[:16]
    adapted.save_pretrained(tmp_path / "yo")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "yo")
    assert loaded.languages() == ["yo"]
    for lang in ("meta", "yo"):
        assert torch.equal(loaded.predict_proba(texts, lang=lang), adapted.predict_proba(texts, lang=lang))


def test_export_merged_equals_xmeta_on_real_encoder(adapted, card, tmp_path):
    texts = load_language_tasks(card, ["yo"], "test")["yo"].texts[:6]
    adapted.export_merged(tmp_path / "plain", lang="yo")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    expected = adapted.predict_proba(texts, lang="yo").log()
    for i, text in enumerate(texts):
        assert tok(text)["input_ids"] == adapted.encode([text])["input_ids"][0].tolist()
        with torch.no_grad():
            got = plain(**tok(text, return_tensors="pt")).logits.log_softmax(-1)[0]
        assert (got - expected[i]).abs().max().item() < 1e-4
    clf = pipeline("text-classification", model=plain, tokenizer=tok)
    assert [r["label"] for r in clf(texts)] == adapted.predict(texts, lang="yo")


def test_variable_shot_episodes_meta_train_the_real_encoder(card):
    """``min_k_shot``: episodes of one and two examples per class train the same θ (each through its own prototypes)."""
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, prototype_head=True)
    tasks = load_language_tasks(card, ["de", "ru", "zh"], "train")
    args = MetaTrainingArguments(steps=2, meta_batch=2, k_shot=2, k_query=2, inner_steps=1, eval_every=0, seed=0,
                                 min_k_shot=1)
    preview = EpisodeSampler(tasks, None, 2, 2, seed=0, min_k_shot=1)
    sizes = {len(e.support_texts) / len(set(e.support_labels)) for _ in range(2) for e in preview.sample_meta_batch(2)}
    assert sizes == {1.0, 2.0}  # these four episodes hold both support sizes
    history = MetaTrainer(model, EpisodeSampler(tasks, None, 2, 2, seed=0, min_k_shot=1), args).train()
    assert len(history) == 2 and all(0 < h.query_loss < 10 for h in history)
