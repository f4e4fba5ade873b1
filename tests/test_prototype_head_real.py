"""The prototype head on the embedded multilingual-e5-small and real CLDR data: meta-train, adapt, save, load, export."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, load_language_tasks, load_task_card, sample_k_shot
from xmeta.evaluation import few_shot_evaluation, score_task
from xmeta.meta import MetaTrainer, MetaTrainingArguments
from xmeta.meta.source_prototypes import fold_source_prototypes

pytestmark = pytest.mark.real


def test_prototype_head_meta_train_adapt_save_load_export(tmp_path):
    card = load_task_card("cldr-emoji")
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(card.labels, task=card.name, prototype_head=True)
    tasks = load_language_tasks(card, ["de", "ru", "zh"], "train")
    dev = load_language_tasks(card, ["de", "ru", "zh"], "dev")
    args = MetaTrainingArguments(steps=2, meta_batch=2, k_shot=2, k_query=2, inner_steps=2, eval_every=1, dev_episodes=2, seed=0)
    trainer = MetaTrainer(model, EpisodeSampler(tasks, None, 2, 2, seed=0), args, EpisodeSampler(dev, None, 2, 2, seed=1))
    history = trainer.train()
    assert model.prototype_mix.log_scale.item() != 0.0  # the mix's scale is learned
    assert trainer.best.step in (1, 2) and all(h.dev_accuracy is not None for h in history)

    train = load_language_tasks(card, ["yo"], "train")["yo"]
    test = load_language_tasks(card, ["yo"], "test")["yo"].texts[:6]
    ids = sample_k_shot(train, 1, seed=0)  # K=1: each prototype is one example
    zero_shot = model.predict_proba(test, lang="meta")
    model.adapt([(train.texts[i], card.labels[train.labels[i]]) for i in ids], lang="yo", steps=2)
    adapted = model.predict_proba(test, lang="yo")
    assert not torch.allclose(adapted, zero_shot)

    # unlabelled Yoruba text centres the source prototypes: a zero-shot adapter (after the fold that ends meta-training)
    fold_source_prototypes(model, tasks)
    folded = model.predict_proba(test, lang="meta")
    model.adapt([], lang="yo0", target_text=train.texts[:64])
    centred = model.predict_proba(test, lang="yo0")
    assert not torch.allclose(centred, folded) and torch.allclose(centred.sum(-1), torch.ones(len(test)))
    # the K-shot protocol (evaluate --target_text) adapts its K=0 run from the same text: that adapter's scores
    rows = load_language_tasks(card, ["yo"], "test")["yo"]
    rows = dataclasses.replace(rows, texts=rows.texts[:24], labels=rows.labels[:24], item_ids=None)
    evaluation = few_shot_evaluation(model, train, rows, [0], [0], target_text=train.texts[:64])
    assert evaluation.runs[0].scores == score_task(model, rows, "yo0") != score_task(model, rows, "meta")

    model.save_pretrained(tmp_path / "yo")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "yo")
    assert loaded.config.prototype_head and torch.equal(loaded.prototype_mix.log_scale, model.prototype_mix.log_scale)
    assert torch.equal(loaded.predict_proba(test, lang="yo"), adapted)
    assert torch.equal(loaded.predict_proba(test, lang="yo0"), centred)
    loaded.export_merged(tmp_path / "plain", lang="yo")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    for i, text in enumerate(test):
        assert tok(text)["input_ids"] == loaded.encode([text])["input_ids"][0].tolist()  # no text cut at max_length
        with torch.no_grad():
            got = plain(**tok(text, return_tensors="pt")).logits.log_softmax(-1)[0]
        assert (got - adapted[i].log()).abs().max().item() < 1e-4
