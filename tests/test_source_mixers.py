"""Plain mixers of the source bank (issue #14): a uniform average, the nearest source by typology and peft's Arrow
routing, beside the learned attention."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import source_bank_model, toy_batch
from xmeta import XMetaForSequenceClassification
from xmeta.data.typology import routing_prior
from xmeta.errors import ArgumentError
from xmeta.meta import InnerLoop
from xmeta.modeling.arrow import ARROW_TOP_K, arrow_prototypes
from xmeta.train import EncoderArguments

SOURCES = ["pt", "ru", "qq", "es", "de"]


def _model(tiny_encoder_dir, **options):
    return source_bank_model(tiny_encoder_dir, SOURCES, **options)


def test_arrow_prototypes_are_the_top_right_singular_vectors_of_each_adapter():
    torch.manual_seed(0)
    bank_a, bank_b = torch.randn(3, 4, 16), torch.randn(3, 12, 4)
    bank_a[2], bank_b[2] = 0, 0  # an empty slot
    v = arrow_prototypes(bank_a, bank_b)
    for s in range(2):
        _, _, vh = torch.linalg.svd(bank_b[s] @ bank_a[s])
        assert torch.allclose(v[s].abs(), vh[0].abs(), atol=1e-5)  # a singular vector's sign is arbitrary
    assert torch.equal(v[2], torch.zeros(16))


def test_uniform_mixer_weighs_every_unmasked_source_alike(tiny_encoder_dir):
    attention = _model(tiny_encoder_dir, source_mixer="uniform").source_transfer.attention
    layer, x = attention.layers[0], torch.randn(2, 3, 32)
    with attention.excluding(["ru"]):
        attention.reset()
        a = attention.weights(layer, x)
    assert torch.allclose(a[..., [0, 2, 3, 4]], torch.full((2, 3, 4), 0.25)) and torch.equal(a[..., 1], torch.zeros(2, 3))


def test_nearest_mixer_gives_every_token_the_source_nearest_to_the_language_read(tiny_encoder_dir):
    """Galician texts borrow from Portuguese alone; in an episode of pt (its slot masked) from the next nearest,
    Spanish; θ's own passes and a language URIEL lacks weigh every source alike; a wider top-k shares the mass
    among the k nearest in proportion to the URIEL prior."""
    model = _model(tiny_encoder_dir, source_mixer="nearest")
    attention = model.source_transfer.attention
    layer, x = attention.layers[0], torch.randn(2, 3, 32)

    def weights():
        attention.reset()
        return attention.weights(layer, x)

    def top(a):
        return [SOURCES[i] for i in (a[0, 0] > 0).nonzero().flatten().tolist()]

    with model.reading("gl"):
        a = weights()
    assert top(a) == ["pt"] and torch.equal(a[0, 0], a[1, 2]) and float(a[0, 0].sum()) == 1.0
    with model.transferring_into("pt"):
        assert top(weights()) == ["es"]
    with model.reading("xx"):  # no URIEL entry: the sources alike
        assert torch.allclose(weights(), torch.full((2, 3, 5), 0.2))
    assert torch.allclose(weights(), torch.full((2, 3, 5), 0.2))  # read outside any language (θ's own passes)
    wide = _model(tiny_encoder_dir, source_mixer="nearest", attention_top_k=2)
    with wide.reading("gl"):
        wide.source_transfer.attention.reset()
        b = wide.source_transfer.attention.weights(layer, x)
    prior = torch.as_tensor(routing_prior("gl", SOURCES), dtype=torch.float32)
    kept = prior.topk(2).indices
    assert torch.allclose(b[0, 0, kept], prior[kept] / prior[kept].sum()) and int((b[0, 0] > 0).sum()) == 2


def test_nearest_mixer_reads_the_texts_language_not_the_adapter_name(tiny_encoder_dir):
    """Predictions through θ and adaptation of a scratch adapter borrow for the language of the texts."""
    model = _model(tiny_encoder_dir, source_mixer="nearest")
    texts = ["cat dog", "rice soup"]
    as_galician = model.predict_proba(texts, lang="meta", language="gl")
    assert torch.equal(as_galician, model.predict_proba(texts, lang="meta", language="gl"))
    assert not torch.allclose(as_galician, model.predict_proba(texts, lang="meta", language="ru"))
    with model.reading("gl"):
        assert torch.equal(model.predict_proba(texts, lang="meta", language="gl"), as_galician)
    for scratch, language in (("s1", "gl"), ("s2", "ru")):  # the same examples, read as another language
        model.adapt([(t, "animal") for t in texts], lang=scratch, steps=1, language=language, allow_missing_labels=True)
    assert not torch.allclose(model.predict_proba(texts, lang="s1", language="gl"),
                              model.predict_proba(texts, lang="s2", language="gl"))


def test_arrow_mixer_routes_each_token_to_its_top_k_aligned_sources(tiny_encoder_dir):
    transfer = _model(tiny_encoder_dir, source_mixer="arrow").source_transfer
    attention, bank = transfer.attention, transfer.bank
    target = bank.targets[0]
    layer = attention.layers[0]
    x = torch.randn(2, 3, bank.tensors(target)[0].shape[-1])
    with attention.excluding(["pt"]):
        attention.reset()
        a = attention.weights(layer, x, target)
    scores = (x @ arrow_prototypes(*bank.tensors(target)).T).abs()
    scores[..., 0] = float("-inf")  # the episode's own language
    top = scores.topk(ARROW_TOP_K, dim=-1)
    expected = torch.zeros_like(a).scatter(-1, top.indices, top.values.softmax(-1))
    assert torch.allclose(a, expected, atol=1e-6)
    assert int((a[0, 0] > 0).sum()) == ARROW_TOP_K and float(a[..., 0].abs().max()) == 0.0
    # the prototypes follow the bank: a refreshed slot moves them
    before = transfer.arrow_prototypes(target).clone()
    lora = {t: (torch.randn_like(bank.tensors(t)[0][1]), torch.randn_like(bank.tensors(t)[1][1])) for t in bank.targets}
    bank.store("ru", lora, momentum=1.0)
    assert not torch.allclose(transfer.arrow_prototypes(target)[1], before[1])


def test_arrow_prototypes_cached_under_inference_mode_serve_a_later_inner_loop(tiny_encoder_dir):
    """Evaluation (inference mode) first, then adaptation (autograd) on the same bank, as the benchmark does;
    two adapted layers, so the upper one's input carries a gradient through Arrow's scores."""
    model = source_bank_model(tiny_encoder_dir, SOURCES, lora_layers=2, source_mixer="arrow")
    with torch.inference_mode():
        model.predict_proba(["cat dog"])
    weights = InnerLoop(lr=0.5, steps=1).run(model, toy_batch(model, "pt", 9))
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.parametrize("mixer", ["uniform", "nearest", "arrow"])
def test_a_plain_mixer_survives_save_and_load(tiny_encoder_dir, tmp_path, mixer):
    texts = ["cat dog", "rice soup pt"]
    model = _model(tiny_encoder_dir, source_mixer=mixer)
    learned = _model(tiny_encoder_dir)
    assert not torch.allclose(model.predict_proba(texts, language="gl"), learned.predict_proba(texts, language="gl"))
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["source_mixer"] == mixer
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.source_transfer.attention.mixer == mixer
    assert torch.equal(loaded.predict_proba(texts, language="gl"), model.predict_proba(texts, language="gl"))


@pytest.mark.parametrize("flags, culprit", [
    ({"source_mixer": "arrow"}, "--source_mixer arrow needs --source_attention on"),
    ({"source_attention": "on", "source_mixer": "uniform", "routing_weight": 1.0}, "--routing_weight"),
    ({"source_attention": "on", "source_mixer": "uniform", "bank_centering": "on"}, "--bank_centering"),
])
def test_mixer_flags_are_checked(flags, culprit):
    with pytest.raises(ArgumentError, match=culprit):
        EncoderArguments(**flags).validate()


@pytest.mark.real
@pytest.mark.parametrize("mixer", ["arrow", "nearest"])
def test_plain_mixers_on_the_real_encoder(tmp_path, mixer):
    """Two real meta-steps with a plain mixer over pt, es, ru and uk. Arrow: the bank's adapters route each token
    to 3 of the 4 sources (what `explain` reports); nearest: Galician borrows from Portuguese alone. A saved model
    predicts the same after loading."""
    from xmeta.cli import main

    assert main(["meta-train", "--out", str(tmp_path / "m"), "--task", "cldr-emoji", "--sources", "pt,es,ru,uk",
                 "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2",
                 "--lora_layers", "1", "--source_attention", "on", "--source_mixer", mixer, "--adapt_steps", "1",
                 "--eval_every", "0", "--romanized_copies", "off"]) == 0
    assert main(["explain", "--model", str(tmp_path / "m"), "--lang", "gl", "--max_texts", "16",
                 "--out", str(tmp_path / "gl")]) == 0
    profile = json.loads((tmp_path / "gl" / "explain.json").read_text())
    assert profile["mixer"] == mixer and f"| source | {mixer} weight |" in (tmp_path / "gl" / "explain.md").read_text()
    assert sum(profile["attention"]) == pytest.approx(1.0, abs=1e-4)
    if mixer == "arrow":
        assert max(profile["attention"]) < 1.0
    else:
        assert profile["attention"] == pytest.approx([1.0, 0.0, 0.0, 0.0], abs=1e-6)  # pt, es, ru, uk
    model = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    texts = ["gato", "maçã vermelha"]
    again = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert torch.equal(model.predict_proba(texts, language="gl"), again.predict_proba(texts, language="gl"))
