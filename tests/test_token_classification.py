"""XMetaForTokenClassification on a tiny random encoder: word-start labels, meta-learning, adapt,
save/load, export to plain transformers, source attention and the meta-embedding."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

from tests.conftest import TOY_WORDS
from xmeta import XMetaForTokenClassification
from xmeta.data import SentenceEpisodeSampler, TaggingTask, tag_map
from xmeta.errors import DataError
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch, MetaTrainer, MetaTrainingArguments
from xmeta.modeling.auto import load_any

TAGS = ["O", "B-ANIMAL", "I-ANIMAL", "B-FOOD", "I-FOOD"]


def toy_sentences(lang: str, n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Animals and foods tagged in BIO among travel words (tagged O); words the tokenizer splits (xyz) included."""
    rng = random.Random(f"{lang}-{seed}")
    rows = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(2, 5)):
            kind = rng.choice(["animal", "food", "travel"])
            span = [rng.choice(TOY_WORDS[kind]) for _ in range(rng.randint(1, 2))]
            words += span
            tags += ["O"] * len(span) if kind == "travel" else [f"{p}-{kind.upper()}" for p in ["B"] + ["I"] * (len(span) - 1)]
        words.append("xyz" if lang == "yo" else "map")
        tags.append("O")
        rows.append((words, tags))
    return rows


def toy_task(lang: str, n: int = 12) -> TaggingTask:
    labels = tag_map(TAGS)
    rows = toy_sentences(lang, n)
    return TaggingTask(lang, [w for w, _ in rows], [labels.encode(t, lang) for _, t in rows], labels)


@pytest.fixture
def tagger(tiny_encoder_dir):
    torch.manual_seed(0)
    return XMetaForTokenClassification.for_labels(tag_map(TAGS).names, encoder=str(tiny_encoder_dir), lora_r=4,
                                                  max_length=32)


def _adapted(model, lang: str = "yo"):
    model.adapt(toy_sentences(lang, 6), lang=lang, steps=5, lr=0.5)
    return model


def test_logits_only_at_word_starts(tagger):
    sentences = [["cat", "xyz", "rice"], ["road"]]
    inputs = tagger.encode(sentences)
    assert inputs["word_starts"].sum(1).tolist() == [3, 1]  # "xyz" is three pieces, tagged once; prefix untagged
    assert tagger(**inputs).logits.shape == (4, len(TAGS))
    tags = tagger.predict(sentences)
    assert [len(t) for t in tags] == [3, 1] and all(t in TAGS for row in tags for t in row)


def test_words_cut_by_max_length_are_dropped_from_labels_and_tagged_o(tagger):
    tagger.config.max_length = 8
    long = [["cat"] * 20]
    batch = LabelledBatch.build(tagger, long, [[1] * 20])
    assert len(batch) == int(tagger.encode(long)["word_starts"].sum())
    assert tagger.predict(long)[0][-1] == "O"


def test_cached_lower_layers_keep_word_starts_and_equal_full_pass(tiny_encoder_dir):
    torch.manual_seed(0)
    model = XMetaForTokenClassification.for_labels(TAGS, encoder=str(tiny_encoder_dir), lora_r=4, lora_layers=1,
                                                   classifier_dropout=0.0)
    inputs = model.encode([w for w, _ in toy_sentences("de", 3)])
    with torch.no_grad():
        cached = model.prepare_for_repeated_passes(inputs)
        assert "word_starts" in cached and "input_ids" not in cached
        assert torch.allclose(model(**inputs).logits, model(**cached).logits, atol=1e-5)


def test_meta_training_adapt_evaluate(tagger):
    tasks = {lang: toy_task(lang) for lang in ("de", "fr", "ru")}
    sampler = SentenceEpisodeSampler(tasks, k_shot=3, k_query=3, seed=0)
    args = MetaTrainingArguments(steps=3, meta_batch=2, inner_steps=2, inner_lr=0.5, outer_lr=1e-2, eval_every=0)
    before = {n: p.detach().clone() for n, p in tagger.fast_parameters().items()}
    history = MetaTrainer(tagger, sampler, args).train()
    assert len(history) == 3 and all(h.query_loss > 0 for h in history)
    assert any(not torch.equal(before[n], p) for n, p in tagger.fast_parameters().items())
    shots = toy_sentences("yo", 6)
    zero_shot = tagger.evaluate([w for w, _ in shots], [t for _, t in shots], lang="meta")
    tagger.adapt(shots, lang="yo", steps=30, lr=0.5)
    scores = tagger.evaluate([w for w, _ in shots], [t for _, t in shots], lang="yo")
    assert set(scores) == {"precision", "recall", "f1", "token_accuracy"}
    assert scores["token_accuracy"] > zero_shot["token_accuracy"]  # the adapter fits its few sentences


def test_adapt_rejects_bad_examples(tagger):
    with pytest.raises(DataError, match="'B-CAR'"):
        tagger.adapt([(["car"], ["B-CAR"])], lang="yo")
    with pytest.raises(DataError, match="2 words but 1 tags"):
        tagger.adapt([(["cat", "dog"], ["B-ANIMAL"])], lang="yo")
    with pytest.raises(DataError, match="list of words"):
        tagger.predict(["cat dog"])


def test_save_load_and_export_equal_plain_transformers(tagger, tmp_path):
    _adapted(tagger)
    tagger.save_pretrained(tmp_path / "m")
    loaded = load_any(tmp_path / "m")
    assert isinstance(loaded, XMetaForTokenClassification) and loaded.languages() == ["yo"]
    sentences = [w for w, _ in toy_sentences("yo", 4, seed=2)]
    for lang in ("meta", "yo"):
        assert all(torch.equal(a, b) for a, b in zip(loaded.predict_logits(sentences, lang), tagger.predict_logits(sentences, lang)))
    tagger.export_merged(tmp_path / "plain", lang="yo")
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    expected = tagger.predict_logits(sentences, "yo")
    for words, logits in zip(sentences, expected):
        inputs = tagger.encode([words])
        plain_inputs = tok(" ".join(words), return_tensors="pt")
        assert plain_inputs["input_ids"].tolist() == inputs["input_ids"].tolist()
        with torch.no_grad():
            got = plain(**plain_inputs).logits[0][inputs["word_starts"][0]]
        assert (got - logits).abs().max().item() < 1e-5
    tagged = pipeline("token-classification", model=plain, tokenizer=tok, ignore_labels=[])
    words = sentences[0]
    tokens = tagged(" ".join(words))
    starts = tagger.encode([words])["word_starts"][0].nonzero().flatten().tolist()
    by_index = {t["index"]: t["entity"] for t in tokens}
    assert [by_index[i] for i in starts] == tagger.predict([words], "yo")[0]


@pytest.mark.parametrize("option", ["source_attention", "meta_embedding", "adapter_generator"])
def test_components_work_for_tagging(tiny_encoder_dir, option, tmp_path):
    torch.manual_seed(0)
    model = XMetaForTokenClassification.for_labels(TAGS, encoder=str(tiny_encoder_dir), lora_r=4, max_length=32,
                                                   source_languages=["de", "fr", "ru"], **{option: True})
    tasks = {lang: toy_task(lang) for lang in ("de", "fr", "ru")}  # 3: leave-one-out still leaves a choice
    if option == "source_attention":
        model.components["source_attention"].init_keys(model, {lang: task.texts for lang, task in tasks.items()})
    slow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and n not in model.fast_parameters()}
    assert slow
    maml = FirstOrderMAML(model, InnerLoop(lr=0.5, steps=2))
    episodes = [(lang, LabelledBatch.build(model, t.texts[:4], t.labels[:4]), LabelledBatch.build(model, t.texts[4:8], t.labels[4:8]))
                for lang, t in tasks.items()]
    maml.meta_gradient(episodes)  # fills the bank: each language's slot holds its inner-loop result
    model.zero_grad(set_to_none=True)
    maml.meta_gradient(episodes)  # now the other language's slot contributes through the attention
    grads = [p.grad for n, p in model.named_parameters() if n in slow]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{option}: no meta-gradient reaches the slow weights"
    _adapted(model)
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForTokenClassification.from_pretrained(tmp_path / "m")
    sentences = [w for w, _ in toy_sentences("yo", 3)]
    assert loaded.predict(sentences, "yo") == model.predict(sentences, "yo")
