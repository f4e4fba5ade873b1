"""Prototype-initialised heads (first-order Proto-MAML), model selection on dev, LoRA dropout."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from tests.conftest import TOY_WORDS, toy_rows
from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, LabelMap, LanguageTask
from xmeta.meta import FirstOrderMAML, InnerLoop, LabelledBatch, MetaTrainer, MetaTrainingArguments, batch_loss
from xmeta.modeling.prototype_head import is_head_tensor, prototype_linear


def _model(tiny_encoder_dir, **config: object) -> XMetaForSequenceClassification:
    torch.manual_seed(0)
    config = {"classifier_dropout": 0.0, **config}
    return XMetaForSequenceClassification.for_labels(list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4,
                                                     lora_layers=1, max_length=32, **config)


def _batch(model, lang: str, per_class: int, seed: int, keep: tuple[str, ...] = tuple(TOY_WORDS)) -> LabelledBatch:
    rows = [r for r in toy_rows(lang, per_class, seed) if r["label"] in keep]
    return LabelledBatch.build(model, [r["text"] for r in rows], [model.config.label2id[r["label"]] for r in rows], chunk_size=4)


def _head(fast: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    names = sorted(n for n in fast if is_head_tensor(n))
    return fast[next(n for n in names if n.endswith(".bias"))], fast[next(n for n in names if n.endswith(".weight"))]


def test_prototype_linear_is_negative_squared_distance_plus_a_row_constant():
    torch.manual_seed(0)
    x = torch.randn(7, 5) * 3 + 10  # far from the origin: centring must not change the logits' differences
    labels = torch.tensor([0, 0, 2, 2, 2, 0, 2])  # class 1 missing
    weight, bias = prototype_linear(x, labels, 3)
    queries = torch.randn(4, 5) * 3 + 10
    logits = queries @ weight.T + bias
    means = torch.stack([x[labels == c].mean(0) for c in (0, 2)])
    distances = -torch.cdist(queries, means) ** 2
    row_constant = logits[:, [0, 2]] - distances
    assert torch.allclose(row_constant, row_constant[:, :1].expand_as(row_constant), atol=1e-3)
    assert torch.equal(weight[1], torch.zeros(5)) and bias[1] == 0  # a missing class keeps its meta-learned row


def test_inner_loop_starts_from_prototypes_k1_and_missing_classes(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, prototype_head=True)
    model.train()
    support = _batch(model, "aa", 1, 0, keep=("animal", "travel"))  # K=1, "food" missing
    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    started, prototype = model.prototype_mix.start(model, theta, support)
    features = model.prototype_mix.features(model, theta, support)
    bias, weight = _head(started)
    meta_bias, meta_weight = _head(theta)
    logits = features @ (weight - meta_weight).T + (bias - meta_bias)  # s = 1 at the start
    food = model.config.label2id["food"]
    assert torch.equal(weight[food], meta_weight[food]) and bias[food] == meta_bias[food]
    present = [model.config.label2id[c] for c in ("animal", "travel")]
    own = logits[torch.arange(len(support)), support.labels]
    other = logits[:, present].sum(1) - own
    assert (own > other).all()  # with one shot per class, each example is nearest its own prototype
    fast = InnerLoop(lr=0.1, steps=2).run(model, support)  # and the loop runs from there
    assert all(torch.isfinite(w).all() for w in fast.values())
    model.adapt([("cat dog", "animal")], lang="xx", steps=2, allow_missing_labels=True)  # a single example
    assert model.predict(["cat"], lang="xx")[0] in TOY_WORDS


def test_scale_gradient_is_the_exact_derivative_without_inner_steps(tiny_encoder_dir):
    """With T=0 the query loss is L(θ_head + s·P): the first-order gradient of log s is exact."""
    model = _model(tiny_encoder_dir, prototype_head=True)
    model.train()
    support, query = _batch(model, "aa", 2, 0), _batch(model, "aa", 2, 1)
    with torch.no_grad():
        model.prototype_mix.log_scale.fill_(-0.5)
    FirstOrderMAML(model, InnerLoop(lr=0.1, steps=0)).meta_gradient([("aa", support, query)])
    got = model.prototype_mix.log_scale.grad

    theta = {n: p.detach() for n, p in model.fast_parameters().items()}
    _, prototype = model.prototype_mix.start(model, theta, support)
    log_scale = torch.tensor(-0.5, requires_grad=True)
    weights = {n: w + log_scale.exp() * prototype[n] if n in prototype else w for n, w in theta.items()}
    logits = torch.cat([functional_call(model, weights, args=(), kwargs=inputs).logits for inputs, _ in query.chunks])
    (expected,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, query.labels), log_scale)
    assert got is not None and abs(got.item() - expected.item()) < 1e-5 and expected.abs() > 0


def test_head_lr_scale_scales_only_the_head():
    sizes = InnerLoop(lr=0.1, steps=1, head_lr_scale=5.0).step_sizes(
        ["peft.base_model.model.classifier.modules_to_save.meta.weight", "x.lora_A.meta.weight"])
    assert sizes == {"peft.base_model.model.classifier.modules_to_save.meta.weight": pytest.approx(0.5),
                     "x.lora_A.meta.weight": 0.1}


def _trainer(model, steps: int, eval_every: int) -> MetaTrainer:
    label_map = LabelMap(tuple(TOY_WORDS))

    def tasks(seed: int) -> dict[str, LanguageTask]:
        out = {}
        for lang in ("aa", "bb", "cc"):
            rows = toy_rows(lang, 6, seed)
            out[lang] = LanguageTask(lang, [r["text"] for r in rows], label_map.encode([r["label"] for r in rows], lang), label_map)
        return out

    args = MetaTrainingArguments(steps=steps, meta_batch=2, k_shot=2, k_query=2, inner_lr=0.3, inner_steps=1,
                                 outer_lr=3e-2, eval_every=eval_every, dev_episodes=2, seed=0)
    return MetaTrainer(model, EpisodeSampler(tasks(0), None, 2, 2, seed=0), args, EpisodeSampler(tasks(1), None, 2, 2, seed=1))


def test_dev_score_runs_in_eval_mode(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, classifier_dropout=0.9, lora_dropout=0.5)
    trainer = _trainer(model, steps=1, eval_every=1)
    model.train()
    scores = []
    for seed in range(3):
        torch.manual_seed(seed)
        scores.append(trainer.dev_accuracy())
    assert scores == [scores[0]] * 3  # with dropout on, the seeds would give different scores
    assert model.training  # the caller's mode is restored


def test_best_dev_state_is_restored(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, prototype_head=True)
    trainer = _trainer(model, steps=4, eval_every=1)
    history = trainer.train()
    best = max(history, key=lambda h: h.dev_accuracy)
    assert trainer.best.step == best.step and trainer.best.score == best.dev_accuracy
    assert all(torch.equal(p, trainer.best.weights[n]) for n, p in trainer.named_trainable().items())
    assert trainer.dev_accuracy() == best.dev_accuracy


def test_lora_dropout_follows_train_mode(tiny_encoder_dir):
    model = _model(tiny_encoder_dir, lora_dropout=0.5)
    with torch.no_grad():
        for name, p in model.fast_parameters().items():
            if "lora_B" in name:
                p.normal_(std=0.5)
    batch = _batch(model, "aa", 2, 0)
    model.train()
    first, second = (batch_loss(model, {}, batch)[1] for _ in range(2))
    assert not torch.equal(first, second)
    model.eval()
    first, second = (batch_loss(model, {}, batch)[1] for _ in range(2))
    assert torch.equal(first, second)


def test_tagger_prototypes_are_per_tag_over_word_starts(tiny_encoder_dir):
    from tests.test_token_classification import TAGS, toy_task
    from xmeta import XMetaForTokenClassification

    torch.manual_seed(0)
    tagger = XMetaForTokenClassification.for_labels(TAGS, encoder=str(tiny_encoder_dir), lora_r=4, max_length=32,
                                                    prototype_head=True)
    task = toy_task("aa", 4)
    support = LabelledBatch.build(tagger, task.texts, task.labels, chunk_size=2)
    theta = {n: p.detach() for n, p in tagger.fast_parameters().items()}
    features = tagger.prototype_mix.features(tagger, theta, support)
    assert features.shape[0] == len(support.labels)  # one feature per tagged word
    started, _ = tagger.prototype_mix.start(tagger, theta, support)
    bias, weight = _head(started)
    meta_bias, meta_weight = _head(theta)
    means = torch.stack([features[support.labels == c].mean(0) for c in support.labels.unique()])
    logits = features @ (weight - meta_weight)[support.labels.unique()].T + (bias - meta_bias)[support.labels.unique()]
    distances = -torch.cdist(features, means) ** 2
    assert torch.allclose(logits - distances, (logits - distances)[:, :1].expand_as(logits), atol=1e-3)
    tagger.adapt(task.examples(range(2)), lang="yo", steps=2)
    assert len(tagger.predict(task.texts[:1], lang="yo")[0]) == len(task.texts[0])
