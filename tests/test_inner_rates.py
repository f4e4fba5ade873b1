"""Learned inner rates (first-order Meta-SGD): groups, the rate meta-gradient against finite
differences, saving with θ, and adaptation with the learned rates."""

from __future__ import annotations

import pytest
import torch

from tests.test_fomaml import _examples, _model
from xmeta import XMetaForSequenceClassification
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch, batch_loss
from xmeta.meta.reference import reference_inner_loop

LR = 0.2


@pytest.fixture
def rated(tiny_encoder_dir):
    """The tiny model in float64 (finite differences need the precision), with learned rates."""
    return _model(tiny_encoder_dir, inner_lr_learned=True, inner_lr=LR).double()


def test_one_rate_per_layer_and_lora_matrix_plus_head(rated):
    assert rated.inner_rates.groups == ["head", "layer0.lora_A", "layer0.lora_B", "layer1.lora_A", "layer1.lora_B"]
    assert torch.allclose(rated.inner_rates.rates(LR), torch.full((5,), LR, dtype=torch.float64))
    assert "inner_rates.log_scale" in rated.shared_state()


def _episode(model):
    support, query = _examples(model, "aa", 3, 1), _examples(model, "aa", 3, 2)
    return support, query, LabelledBatch.build(model, *support, chunk_size=4), LabelledBatch.build(model, *query, chunk_size=4)


def _central_difference(f, alpha: torch.Tensor, rel: float = 1e-6) -> torch.Tensor:
    out = torch.zeros_like(alpha)
    for g in range(len(alpha)):
        step = torch.zeros_like(alpha)
        step[g] = rel * alpha[g]
        out[g] = (f(alpha + step) - f(alpha - step)) / (2 * step[g])
    return out


def rate_derivatives(model, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dL_Q/dα per group three ways: xmeta's first-order estimate; finite differences of the query
    loss with the inner gradients held at their values for the current α (φ_T(α) = φ_0 − α_g Σ_t g_t,
    what the estimate differentiates); finite differences of the true φ_T(α) (deepcopy + SGD)."""
    rates = model.inner_rates
    with torch.no_grad():
        rates.log_scale.copy_(torch.linspace(-0.4, 0.4, len(rates.groups), dtype=torch.float64))
    alpha = rates.rates(LR).detach().clone()
    support, query, support_batch, query_batch = _episode(model)
    model.train()
    FirstOrderMAML(model, InnerLoop(LR, steps, rates)).meta_gradient([("aa", support_batch, query_batch)])
    estimate = rates.log_scale.grad / alpha  # the chain rule back from log-scales to rates

    def true_loss(a: torch.Tensor) -> float:
        lrs = {n: float(a[rates.index(n)]) for n in model.fast_parameters()}
        clone = reference_inner_loop(model, support, lrs, steps)
        return batch_loss(clone, {}, LabelledBatch.build(clone, *query))[0].item()

    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    adapted = reference_inner_loop(model, support, {n: float(alpha[rates.index(n)]) for n in theta}, steps)
    summed = {n: (theta[n] - p.detach()) / alpha[rates.index(n)] for n, p in adapted.fast_parameters().items()}

    def frozen_gradient_loss(a: torch.Tensor) -> float:
        weights = {n: theta[n] - a[rates.index(n)] * summed[n] for n in theta}
        return batch_loss(model, weights, query_batch)[0].item()

    return estimate, _central_difference(frozen_gradient_loss, alpha), _central_difference(true_loss, alpha)


def _relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_estimate_is_the_derivative_with_inner_gradients_held_fixed(rated):
    estimate, frozen, true = rate_derivatives(rated, steps=3)
    assert estimate.abs().min() > 0
    assert _relative_gap(estimate, frozen) < 1e-6
    # for T > 1 the inner gradients do depend on α: the first-order estimate is only close to the truth
    print(f"\nT=3 first-order vs true dL/dα: max relative gap {_relative_gap(estimate, true):.3g}")
    assert _relative_gap(estimate, true) < 0.05


def test_estimate_is_exact_for_one_inner_step(rated):
    estimate, frozen, true = rate_derivatives(rated, steps=1)
    print(f"\nT=1 first-order vs true dL/dα: max relative gap {_relative_gap(estimate, true):.3g}")
    assert _relative_gap(estimate, true) < 1e-6
    assert _relative_gap(frozen, true) < 1e-6


def test_rates_are_saved_with_theta_and_used_by_adapt(rated, tmp_path):
    rated.float()
    with torch.no_grad():
        rated.inner_rates.log_scale[rated.inner_rates.groups.index("head")] = -60.0  # head rate ≈ 0
    rated.save_pretrained(tmp_path / "m")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.inner_rates.log_scale, rated.inner_rates.log_scale)

    head = {n: p.detach().clone() for n, p in loaded.fast_parameters().items() if "classifier" in n}
    examples = [(text, loaded.config.id2label[label]) for text, label in zip(*_examples(loaded, "zz", 2, 0))]
    loaded.adapt(examples, lang="zz")
    assert all(torch.allclose(p, head[n.replace(".zz.", ".meta.")], atol=1e-12)
               for n, p in loaded.fast_parameters().items() if "classifier" in n)
    loaded.adapt(examples, lang="yy", lr=LR)  # an explicit lr: one rate for every tensor, head included
    assert any(not torch.allclose(p, head[n.replace(".yy.", ".meta.")])
               for n, p in loaded.fast_parameters().items() if "classifier" in n)


def test_outer_loop_gives_the_rates_their_own_learning_rate(rated):
    from xmeta.meta.trainer import MetaTrainer, MetaTrainingArguments

    args = MetaTrainingArguments(steps=1, learn_inner_lr=True, inner_rate_lr=0.03)
    groups = MetaTrainer(rated, None, args).optimizer.param_groups
    assert [g["lr"] for g in groups] == [args.outer_lr, 0.03]
    assert groups[1]["params"] == [rated.inner_rates.log_scale]
    assert all(p is not rated.inner_rates.log_scale for p in groups[0]["params"])


def test_the_flag_must_match_how_the_model_was_built(rated, tiny_encoder_dir):
    from xmeta.errors import ArgumentError
    from xmeta.meta.trainer import MetaTrainer, MetaTrainingArguments

    with pytest.raises(ArgumentError, match="--learn_inner_lr is False but the model was built with inner_lr_learned=True"):
        MetaTrainer(rated, None, MetaTrainingArguments(steps=1))
    with pytest.raises(ArgumentError, match="--learn_inner_lr is True but the model was built with inner_lr_learned=False"):
        MetaTrainer(_model(tiny_encoder_dir), None, MetaTrainingArguments(steps=1, learn_inner_lr=True))
