"""Generated adapters (issue #14): a hypernetwork maps a language's representation to an update of θ."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import TOY_WORDS, toy_batch, toy_rows
from tests.test_source_prototypes import _tasks
from xmeta import XMetaForSequenceClassification
from xmeta.cli import main
from xmeta.data.typology import routing_prior
from xmeta.errors import ArgumentError, DataError
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch
from xmeta.meta.fomaml import batch_loss
from xmeta.meta.source_prototypes import fold_source_prototypes, generated_start
from xmeta.modeling import META_ADAPTER
from xmeta.modeling.prototype_head import is_head_tensor
from xmeta.train import EncoderArguments

SOURCES = ["pt", "ru", "qq", "es", "de"]  # qq: a well-formed code URIEL lacks


def _texts(lang: str) -> list[str]:
    return [r["text"] for r in toy_rows(lang, 2, 0)]


def _model(tiny_encoder_dir, **options) -> XMetaForSequenceClassification:
    """A tiny model with a generator whose sources are set (as before meta-training) and whose output layer is
    moved off zero, so that it generates a non-trivial update."""
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(
        list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4, lora_layers=1, classifier_dropout=0.0,
        source_languages=SOURCES, adapter_generator=True, **options)
    generator = model.adapter_generator
    generator.set_sources(torch.stack([model.task_embedding(_texts(lang), lang) for lang in SOURCES]))
    with torch.no_grad():
        generator.out.weight.normal_(std=0.05)
    return model


def _start(model, lang: str) -> dict[str, torch.Tensor]:
    component = model.components["adapter_generator"]
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    return component.start_at(model, theta, component.module.representation(lang)[0])


def test_a_fresh_generator_generates_no_update(tiny_encoder_dir):
    torch.manual_seed(0)
    model = XMetaForSequenceClassification.for_labels(list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4,
                                                      source_languages=SOURCES, adapter_generator=True)
    theta = model.fast_parameters()
    assert all(torch.equal(w, theta[n]) for n, w in _start(model, "gl").items())


def test_the_average_source_gets_no_update(tiny_encoder_dir):
    """δ is relative to the sources' mean representation r̄: what every language shares is θ's to learn."""
    generator = _model(tiny_encoder_dir).adapter_generator
    assert torch.allclose(generator.centre, generator.source_representations.mean(0))
    assert all(torch.equal(u, torch.zeros_like(u)) for u in generator(generator.centre).values())


def test_every_inner_loop_starts_at_theta_plus_the_generated_update(tiny_encoder_dir):
    model = _model(tiny_encoder_dir)
    generator = model.adapter_generator
    updates = generator(generator.representation("gl")[0])
    theta = model.fast_parameters()
    start = _start(model, "gl")
    assert set(start) == set(theta) == set(updates)  # LoRA A and B of every adapted layer, and the head
    for name, value in start.items():
        assert torch.allclose(value, theta[name] + updates[name]) and updates[name].abs().max() > 0


def test_source_representations_are_leave_one_out_and_fall_back_to_the_task_embedding(tiny_encoder_dir):
    generator = _model(tiny_encoder_dir).adapter_generator
    rows = generator.source_representations
    assert torch.allclose(rows.sum(1), torch.ones(len(SOURCES))) and torch.equal(rows.diagonal(), torch.zeros(len(SOURCES)))
    pt = SOURCES.index("pt")
    others = [s for s in SOURCES if s != "pt"]
    expected = routing_prior("pt", others, generator.temperature)
    assert np.allclose(rows[pt, [SOURCES.index(s) for s in others]].numpy(), expected, atol=1e-6)
    qq = SOURCES.index("qq")  # URIEL lacks it: its task embedding's centred cosines to the others decide
    assert torch.allclose(rows[qq], generator.task_weights(generator.task_embeddings[qq], excluded=qq))
    # a target: URIEL when it has the language, else the task embedding of its texts, else uniform
    r, kind = generator.representation("gl")
    assert kind == "uriel" and np.allclose(r.numpy(), routing_prior("gl", SOURCES, generator.temperature), atol=1e-6)
    assert r.argmax().item() in (SOURCES.index("pt"), SOURCES.index("es"))
    embedding = torch.randn(generator.task_embeddings.shape[1])
    r, kind = generator.representation("qw", embedding)
    assert kind == "task_embedding" and torch.allclose(r, generator.task_weights(embedding))
    r, kind = generator.representation("qw")
    assert kind == "uniform" and torch.allclose(r, torch.full((len(SOURCES),), 0.2))


def test_generator_meta_gradient_is_the_query_gradient_pulled_back_through_the_update(tiny_encoder_dir):
    """With 0 inner steps first-order MAML is exact: the generator's gradient must equal autograd's through
    φ₀ = θ + δ(r_es)."""
    model = _model(tiny_encoder_dir)
    generator = model.adapter_generator
    support, query = toy_batch(model, "es", 0), toy_batch(model, "es", 1)
    model.train()
    model.zero_grad(set_to_none=True)
    FirstOrderMAML(model, InnerLoop(lr=0.1, steps=0)).meta_gradient([("es", support, query)])
    got = {n: p.grad.clone() for n, p in generator.named_parameters()}
    updates = generator(generator.representation("es")[0])
    fast = {n: p.detach() + updates[n] for n, p in model.fast_parameters().items()}
    loss, _ = batch_loss(model, fast, query)
    expected = dict(zip(dict(generator.named_parameters()), torch.autograd.grad(loss, list(generator.parameters()))))
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-6, rtol=1e-4), name
    assert got["out.weight"].abs().max() > 0


def test_zero_shot_generated_adapter_saves_loads_and_exports_alike(tiny_encoder_dir, tmp_path):
    model = _model(tiny_encoder_dir)
    expected = _start(model, "gl")  # from θ, the active adapter
    result = model.adapt([], lang="gl")  # a model with a generator starts there by default
    assert result.examples == 0 and result.steps == 0
    adapter = model.adapter_state("gl")
    for name, value in expected.items():
        assert torch.allclose(adapter[name.removeprefix("peft.").replace(f".{META_ADAPTER}.", ".gl.")], value)
    texts = [r["text"] for r in toy_rows("gl", 2, 5)]
    probabilities = model.predict_proba(texts, lang="gl")
    assert not torch.allclose(probabilities, model.predict_proba(texts, lang=META_ADAPTER))  # the update matters
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m", lang="gl")
    assert torch.equal(loaded.predict_proba(texts), probabilities)
    assert torch.equal(loaded.adapter_generator.out.weight, model.adapter_generator.out.weight)
    loaded.export_merged(tmp_path / "plain", lang="gl")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "plain")
    with torch.no_grad():  # one text at a time, as the real-encoder export test does
        got = torch.cat([plain(**tokenizer(text, return_tensors="pt")).logits.softmax(-1) for text in texts])
    assert torch.allclose(got, probabilities, atol=1e-5)


def test_k_shot_adaptation_starts_from_the_generated_adapter(tiny_encoder_dir):
    model = _model(tiny_encoder_dir)
    examples = [(r["text"], r["label"]) for r in toy_rows("gl", 2, 3)]
    states = {}
    for init in (None, "generated", "meta"):
        model.adapt(examples, lang="gl", steps=2, seed=0, init=init)
        states[init] = model.adapter_state("gl")
    assert all(torch.equal(states[None][n], states["generated"][n]) for n in states[None])
    assert any(not torch.allclose(states["meta"][n], states["generated"][n]) for n in states[None])
    step = InnerLoop(lr=model.config.inner_lr, steps=2)
    model.start_language("gx")
    with model.components["adapter_generator"].generating(model.adapter_generator.representation("gl")[0]):
        torch.manual_seed(0)
        batch = LabelledBatch.build(model, [t for t, _ in examples], [model.config.label2id[y] for _, y in examples])
        model.train()
        fast = step.run(model, batch)
    for name, value in fast.items():
        assert torch.allclose(states["generated"][name.removeprefix("peft.").replace(".gx.", ".gl.")], value, atol=1e-6)


def test_generation_mistakes_are_refused(tiny_model, tiny_encoder_dir):
    with pytest.raises(ArgumentError, match="--adapter_generator on"):
        tiny_model.adapt([], lang="gl", init="generated")
    with pytest.raises(DataError, match="no examples given"):
        tiny_model.adapt([], lang="gl")
    with pytest.raises(ArgumentError, match="init must be one of"):
        _model(tiny_encoder_dir).adapt([], lang="gl", init="random")
    with pytest.raises(ArgumentError, match="--generator_dim"):
        EncoderArguments(adapter_generator="on", generator_dim=0).validate()


def test_cli_generate_needs_a_generator(tiny_model, tmp_path, toy_jsonl, capsys):
    tiny_model.save_pretrained(tmp_path / "m")
    code = main(["adapt", "--model", str(tmp_path / "m"), "--lang", "gl", "--train", str(toy_jsonl(["gl"])),
                 "--generate", "--out", str(tmp_path / "gl")])
    assert code == 2 and "--adapter_generator on" in capsys.readouterr().err
    assert not (tmp_path / "gl").exists()


@pytest.mark.real
def test_generated_adapters_on_the_real_encoder(tmp_path):
    """Two real meta-steps with the generator over pt, es, ru and uk: it has learned (its output layer left 0),
    `xmeta adapt --generate` writes a zero-shot adapter for Galician that `explain` describes from URIEL (pt or es
    first), and the exported plain model predicts as xmeta does."""
    assert main(["meta-train", "--out", str(tmp_path / "m"), "--task", "cldr-emoji", "--sources", "pt,es,ru,uk",
                 "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2",
                 "--lora_layers", "1", "--adapter_generator", "on", "--adapt_steps", "1", "--eval_every", "0"]) == 0
    model = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert model.adapter_generator.out.weight.abs().max() > 0
    assert main(["adapt", "--model", str(tmp_path / "m"), "--task", "cldr-emoji", "--lang", "gl", "--generate",
                 "--out", str(tmp_path / "gl")]) == 0
    assert main(["explain", "--model", str(tmp_path / "gl"), "--lang", "gl", "--max_texts", "8",
                 "--out", str(tmp_path / "ex")]) == 0
    explanation = json.loads((tmp_path / "ex" / "explain.json").read_text())
    generator = explanation["generator"]
    assert generator["representation"] == "uriel" and generator["update_norm"] > 0
    ranked = sorted(zip(generator["weights"], generator["sources"]), reverse=True)
    assert ranked[0][1] in ("pt", "es") and (tmp_path / "ex" / "generator_input.png").exists()
    adapted = XMetaForSequenceClassification.from_pretrained(tmp_path / "gl", lang="gl")
    texts = ["gato", "maçã vermelha", "cara sorridente"]
    expected = adapted.predict_proba(texts)
    adapted.export_merged(tmp_path / "plain", lang="gl")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "plain")
    with torch.no_grad():
        got = torch.cat([plain(**tokenizer(text, return_tensors="pt")).logits.softmax(-1) for text in texts])
    assert torch.allclose(got, expected, atol=1e-4)


def test_source_prototypes_are_read_under_each_source_s_generated_start(tiny_encoder_dir):
    """θ's K=0 head is folded from the sources' features as their zero-shot adapters read them: the start the
    fold uses for a source is the adapter `adapt` generates for it with no examples."""
    model = _model(tiny_encoder_dir)
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    start = generated_start(model, theta, "es")
    model.adapt([], lang="es")
    adapter = model.adapter_state("es")
    for name, value in start.items():
        assert torch.allclose(adapter[name.removeprefix("peft.").replace(f".{META_ADAPTER}.", ".es.")], value)
    assert any(not torch.equal(start[n], theta[n]) for n in theta)


def test_a_generated_adapter_reads_its_text_centre_under_the_generated_start(tiny_encoder_dir):
    """Prototypes are read under the generated LoRA (the generator starts first), so the language's centre is too."""
    model = _model(tiny_encoder_dir, prototype_head=True)
    fold_source_prototypes(model, _tasks(("pt", "es", "de")), per_class=2)
    mix = model.prototype_mix
    texts = [r["text"] for r in toy_rows("gl", 3, 7)]
    start = _start(model, "gl")
    batch = LabelledBatch.build(model, texts, [0] * len(texts), language="gl")
    centre = mix.features(model, start, batch).mean(0)
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    assert not torch.allclose(centre, mix.features(model, theta, batch).mean(0))  # the generated LoRA moves it
    with mix.centred_on(centre):
        expected = mix.start_from(start, *mix.text_linear())[0]
    model.adapt([], lang="gl", target_text=texts)
    adapter = model.adapter_state("gl")
    for name, value in expected.items():
        assert torch.allclose(adapter[name.removeprefix("peft.").replace(f".{META_ADAPTER}.", ".gl.")], value,
                              atol=1e-5), name
    assert any(is_head_tensor(n) for n in expected)
