"""Routing for source attention (issue #14): the URIEL prior buffer, its KL loss, and bank centring."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import source_bank_model, toy_batch
from xmeta import XMetaForSequenceClassification
from xmeta.train import EncoderArguments
from xmeta.errors import ArgumentError
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch
from xmeta.modeling.components.source_attention import SourceAttention
from xmeta.modeling.routing import recording_with_masks, routing_loss, routing_prior_matrix

SOURCES = ["pt", "ru", "qq"]  # qq: no URIEL entry


def _model(tiny_encoder_dir, **options):
    return source_bank_model(tiny_encoder_dir, SOURCES, **options)


def test_prior_rows_rank_close_pairs_first_and_leave_out_the_diagonal():
    langs = ["pt", "es", "ru", "uk", "zh", "id", "gl", "be"]
    prior = routing_prior_matrix(langs, temperature=0.1)
    assert torch.all(prior.diagonal() == 0)
    assert torch.allclose(prior.sum(1), torch.ones(len(langs)))
    top = {lang: langs[int(prior[i].argmax())] for i, lang in enumerate(langs)}
    assert top["gl"] in ("pt", "es") and top["be"] in ("ru", "uk")
    assert top["uk"] in ("ru", "be") and top["pt"] in ("es", "gl")


def test_self_routing_prior_puts_each_language_first_then_its_relatives():
    langs = ["pt", "es", "ru", "uk", "zh", "id", "gl", "be"]
    own = routing_prior_matrix(langs, temperature=0.1, include_self=True)
    assert torch.allclose(own.sum(1), torch.ones(len(langs)))
    assert torch.equal(own.argmax(1), torch.arange(len(langs)))  # a language resembles itself most
    others = own.clone().fill_diagonal_(0)
    loo = routing_prior_matrix(langs, temperature=0.1)
    assert torch.allclose(others / others.sum(1, keepdim=True), loo, atol=1e-6)  # its relatives in the same proportions


def test_self_routing_reads_the_attention_before_the_own_slot_is_masked(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, routing_weight=1.0, routing_self=True)
    attention = model.source_transfer.attention
    assert attention.routing_prior[0, 0] > 0.3  # pt's row: mostly pt itself
    batch = toy_batch(model, "pt", 6)

    def recorded(unmasked: bool) -> torch.Tensor:
        with model.transferring_into("pt"), torch.no_grad(), \
                recording_with_masks(attention, model.peft, unmasked=unmasked) as (weights, _masks):
            for inputs, _ in batch.chunks:
                model(**inputs)
        return torch.cat([w.reshape(-1, w.shape[-1]) for w in weights])

    masked, unmasked = recorded(False), recorded(True)
    assert torch.all(masked[:, 0] == 0) and torch.all(unmasked[:, 0] > 0)  # the mix itself still leaves pt out
    assert torch.allclose(unmasked[:, 1:] / unmasked[:, 1:].sum(-1, keepdim=True), masked[:, 1:], atol=1e-6)


def test_self_routing_changes_only_the_attention_gradient(tiny_encoder_dir):
    grads = {}
    for routing_self in (False, True):
        model = _model(tiny_encoder_dir, routing_weight=1.0, routing_self=routing_self)
        grads[routing_self] = _attention_grads(model, [("pt", toy_batch(model, "pt", 5), toy_batch(model, "pt", 6))])
    assert grads[False].keys() == grads[True].keys()
    changed = {name for name in grads[True] if not torch.equal(grads[True][name], grads[False][name])}
    assert changed and all(name.startswith("source_transfer.attention.") for name in changed)


def test_a_source_uriel_lacks_gets_no_prior_and_no_loss(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, routing_weight=1.0)
    prior = model.source_transfer.attention.routing_prior
    assert torch.all(prior[SOURCES.index("qq")] == 0)  # row unused
    assert prior[SOURCES.index("pt")].sum() == pytest.approx(1.0)  # pt still draws on ru and qq (mean similarity)
    episodes = [("qq", toy_batch(model, "qq", 5), toy_batch(model, "qq", 6))]
    with_routing = _attention_grads(model, episodes)
    model.components["source_attention"].routing_weight = 0.0
    assert _attention_grads(model, episodes).keys() == with_routing.keys()
    for name, grad in _attention_grads(model, episodes).items():
        assert torch.equal(grad, with_routing[name]), name


def test_the_loss_averages_over_real_tokens_of_every_pass(tiny_encoder_dir):
    model = _model(tiny_encoder_dir)
    texts = ["cat", "rice soup train road map", "dog map", "soup"]
    batch = LabelledBatch.build(model, texts, [0, 1, 0, 1], chunk_size=2)  # two passes of their own padding
    with model.transferring_into("pt"), recording_with_masks(model.source_transfer.attention, model.peft) as (weights, masks):
        for inputs, _ in batch.chunks:
            model(**inputs)
    assert len(batch.chunks) == 2 and len(weights) == len(masks) == 2 * len(model.source_transfer.attention.layers)
    assert all(w.shape[:2] == m.shape for w, m in zip(weights, masks)) and any(bool((m == 0).any()) for m in masks)
    prior = torch.tensor([0.0, 0.5, 0.5])
    real = torch.cat([w.detach()[m.bool()] for w, m in zip(weights, masks)]).mean(0)  # padding left out
    expected = (prior[1:] * (prior[1:] / real[1:]).log()).sum()
    assert torch.allclose(routing_loss(prior, weights, masks).detach(), expected, rtol=1e-5)
    assert weights[0].requires_grad  # with their graph, for the gradient


def _attention_grads(model, episodes) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    FirstOrderMAML(model, InnerLoop(lr=0.3, steps=2)).meta_gradient(episodes)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_the_routing_loss_reaches_only_the_attention(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, routing_weight=1.0)
    episodes = [("pt", toy_batch(model, "pt", 5), toy_batch(model, "pt", 6))]
    on = _attention_grads(model, episodes)
    model.components["source_attention"].routing_weight = 0.0
    off = _attention_grads(model, episodes)
    assert on.keys() == off.keys()
    changed = {name for name in on if not torch.equal(on[name], off[name])}
    assert changed and all(name.startswith("source_transfer.attention.") for name in changed)


def _mean_attention(model, lang: str, batch: LabelledBatch) -> torch.Tensor:
    with model.transferring_into(lang), model.source_transfer.attention.recording() as seen, torch.no_grad():
        for inputs, _ in batch.chunks:
            model(**inputs)
    return torch.cat([w.reshape(-1, w.shape[-1]) for _, w in seen]).mean(0)


def _kl_after_meta_steps(tiny_encoder_dir, weight: float, steps: int = 4) -> tuple[float, float]:
    model = _model(tiny_encoder_dir, routing_weight=weight)
    attention = model.source_transfer.attention
    with torch.no_grad():  # a prior the initial attention is far from: pt should draw on qq
        attention.routing_prior[0] = torch.tensor([0.0, 0.05, 0.95])
    query = toy_batch(model, "pt", 6)
    prior = attention.routing_prior[0, 1:]

    def kl() -> float:
        mean = _mean_attention(model, "pt", query)[1:]
        return float((prior * (prior.log() - mean.log())).sum())

    before = kl()
    optimizer = torch.optim.AdamW(attention.parameters(), lr=0.05)
    maml = FirstOrderMAML(model, InnerLoop(lr=0.3, steps=1))
    for step in range(1, steps + 1):
        model.zero_grad(set_to_none=True)
        model.components["source_attention"].outer_step(step, steps)
        torch.manual_seed(step)
        maml.meta_gradient([("pt", toy_batch(model, "pt", 5), query)])
        optimizer.step()
    return before, kl()


def test_a_few_meta_steps_move_the_attention_toward_the_prior(tiny_encoder_dir):
    before, with_loss = _kl_after_meta_steps(tiny_encoder_dir, weight=1.0)
    _, without = _kl_after_meta_steps(tiny_encoder_dir, weight=0.0)
    assert with_loss < 0.8 * before and with_loss < 0.8 * without


def test_linear_annealing():
    """λ_t = w · (1 − (t − 1) / T): the full weight at the first outer step, w / T at the last."""
    component = SourceAttention(torch.nn.Module(), routing_weight=2.0)
    component.outer_step(1, 4)
    assert component.routing_weight == 2.0
    component.outer_step(4, 4)
    assert component.routing_weight == pytest.approx(0.5)


def test_centred_mix_equals_the_mix_of_centred_adapters(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, bank_centering=True)
    transfer = model.source_transfer
    target = transfer.bank.targets[0]
    layer = transfer.attention.layers[0]
    bank_a, bank_b = transfer.bank.tensors(target)
    bank_a.normal_(), bank_b.normal_()  # deltas of order 1 (a few inner steps leave B near its zero start)
    x = torch.randn(2, 5, bank_a.shape[-1])
    deltas = torch.einsum("sor,sri->soi", bank_b, bank_a) * transfer.bank.scaling  # Δ_l [S, out, in]
    centred = deltas - deltas.mean(0, keepdim=True)
    for excluded in ([], ["ru"]):
        with transfer.attention.excluding(excluded), torch.no_grad():
            transfer.attention.reset()
            mix = transfer._hook(target, layer)(None, (x,), torch.zeros(2, 5, bank_b.shape[1]))
            a = transfer.attention.weights(layer, x)
        expected = torch.einsum("bts,soi,bti->bto", a, centred, x)
        assert torch.allclose(mix, expected, atol=1e-5)
        assert not torch.allclose(mix, torch.einsum("bts,soi,bti->bto", a, deltas, x), atol=1e-4)


def test_centring_survives_save_and_load(tiny_encoder_dir, tmp_path):
    texts = ["cat dog", "rice soup pt"]
    model = _model(tiny_encoder_dir, bank_centering=True, routing_weight=0.5)
    plain = _model(tiny_encoder_dir)
    assert not torch.allclose(model.predict_proba(texts), plain.predict_proba(texts))
    model.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.source_transfer.centering
    for buffer in ("routing_prior", "query_centres"):  # saved with θ: loading needs neither URIEL nor texts
        assert torch.equal(getattr(loaded.source_transfer.attention, buffer), getattr(model.source_transfer.attention, buffer))
    assert torch.equal(loaded.predict_proba(texts), model.predict_proba(texts))


@pytest.mark.parametrize("flags, culprit", [
    ({"routing_weight": 1.0}, "--routing_weight"), ({"bank_centering": "on"}, "--bank_centering"),
    ({"source_attention": "on", "routing_weight": -1.0}, "--routing_weight"),
    ({"source_attention": "on", "routing_temperature": 0.0}, "--routing_temperature"),
    ({"source_attention": "on", "routing_self": "on"}, "--routing_self"),
])
def test_routing_flags_are_checked(flags, culprit):
    with pytest.raises(ArgumentError, match=culprit):
        EncoderArguments(**flags).validate()


@pytest.mark.real
@pytest.mark.parametrize("routing_self", ["off", "on"])
def test_routing_on_the_real_encoder_sends_gl_and_be_to_their_relatives(tmp_path, capsys, routing_self):
    """Four real meta-steps over pt, es, ru, uk, zh and id with the routing loss (leave-one-out or self-routing);
    `explain` then puts Galician's attention first on Portuguese or Spanish and Belarusian's on Russian or Ukrainian."""
    from xmeta.cli import main

    assert main(["meta-train", "--out", str(tmp_path / "m"), "--task", "cldr-emoji", "--sources", "pt,es,ru,uk,zh,id",
                 "--steps", "4", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2",
                 "--lora_layers", "1", "--source_attention", "on", "--routing_weight", "1", "--attention_lr", "0.05", "--bank_centering", "on",
                 "--routing_self", routing_self, "--adapt_steps", "1",
                 "--eval_every", "0"]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["routing_self"] is (routing_self == "on")
    for lang, close in (("gl", {"pt", "es"}), ("be", {"ru", "uk"})):
        assert main(["explain", "--model", str(tmp_path / "m"), "--lang", lang, "--max_texts", "32",
                     "--out", str(tmp_path / lang)]) == 0
        profile = json.loads((tmp_path / lang / "explain.json").read_text())
        attention = dict(zip(profile["sources"], profile["attention"]))
        print(f"\n{lang} attention", {k: round(v, 3) for k, v in attention.items()})
        assert max(attention, key=attention.get) in close
