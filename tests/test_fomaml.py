"""First-order MAML: the functional meta-gradient against the deepcopy-per-task reference (`xmeta.meta.reference`)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TOY_WORDS, toy_rows
from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, LabelMap, LanguageTask
from xmeta.meta import (
    FirstOrderMAML,
    InnerLoop,
    LabelledBatch,
    MetaTrainer,
    MetaTrainingArguments,
)
from xmeta.meta.reference import reference_meta_gradient


def _examples(model, lang: str, per_class: int, seed: int) -> tuple[list[str], list[int]]:
    rows = toy_rows(lang, per_class, seed)
    return [r["text"] for r in rows], [model.config.label2id[r["label"]] for r in rows]


def _batch(model, lang: str, per_class: int, seed: int, chunk_size: int = 4) -> LabelledBatch:
    return LabelledBatch.build(model, *_examples(model, lang, per_class, seed), chunk_size=chunk_size)


def _model(tiny_encoder_dir, lora_layers: int = 0, **config: object):
    torch.manual_seed(0)
    m = XMetaForSequenceClassification.for_labels(list(TOY_WORDS), encoder=str(tiny_encoder_dir), lora_r=4,
                                                  lora_layers=lora_layers, classifier_dropout=0.0, **config)
    # LoRA B starts at zero; give it values so every fast tensor has a non-trivial gradient.
    with torch.no_grad():
        for name, p in m.fast_parameters().items():
            if "lora_B" in name:
                p.normal_(std=0.05)
    return m


@pytest.fixture
def model(tiny_encoder_dir):
    return _model(tiny_encoder_dir)


@pytest.mark.parametrize(("lora_layers", "pad_to"), [(0, None), (1, None), (1, 40)])
def test_meta_gradient_matches_deepcopy_reference(tiny_encoder_dir, lora_layers, pad_to):
    """``pad_to``: the reference pads every text to that length, as the speed benchmark's baseline does."""
    model = _model(tiny_encoder_dir, lora_layers)
    raw = [(_examples(model, lang, 3, 1), _examples(model, lang, 3, 2)) for lang in ("aa", "bb", "cc")]
    episodes = [(lang, LabelledBatch.build(model, *s, chunk_size=4), LabelledBatch.build(model, *q, chunk_size=4))
                for lang, (s, q) in zip(("aa", "bb", "cc"), raw)]
    assert len(episodes[0][1].chunks) == 3
    model.train()
    reference_meta_gradient(model, raw, lr=0.1, steps=3, pad_to=pad_to)  # the deepcopy-per-task way, into .grad
    expected = {n: p.grad for n, p in model.fast_parameters().items()}
    model.zero_grad(set_to_none=True)
    before = {n: p.detach().clone() for n, p in model.fast_parameters().items()}
    FirstOrderMAML(model, InnerLoop(lr=0.1, steps=3)).meta_gradient(episodes)
    for name, p in model.fast_parameters().items():
        assert torch.equal(p.detach(), before[name]), f"inner loop changed θ in place: {name}"
        assert p.grad is not None, name
        assert (p.grad - expected[name]).abs().max().item() < 1e-6, name
    assert any(p.grad.abs().max() > 0 for p in model.fast_parameters().values())


def test_inner_loop_lowers_support_loss(model):
    support = _batch(model, "aa", 4, 0)
    from xmeta.meta import batch_loss

    start, _ = batch_loss(model, {}, support)
    fast = InnerLoop(lr=0.5, steps=5).run(model, support)
    end, _ = batch_loss(model, fast, support)
    assert end.item() < start.item()


def test_meta_training_improves_dev_episodes(model):
    label_map = LabelMap(tuple(TOY_WORDS))

    def tasks(seed: int) -> dict[str, LanguageTask]:
        out = {}
        for lang in ("aa", "bb", "cc", "dd"):
            rows = toy_rows(lang, 10, seed)
            out[lang] = LanguageTask(lang, [r["text"] for r in rows], label_map.encode([r["label"] for r in rows], lang), label_map)
        return out

    args = MetaTrainingArguments(steps=12, meta_batch=2, k_shot=2, k_query=3, inner_lr=0.3, inner_steps=2,
                                 outer_lr=1e-2, eval_every=0, dev_episodes=4, seed=0)
    trainer = MetaTrainer(model, EpisodeSampler(tasks(0), None, 2, 3, seed=0), args,
                          EpisodeSampler(tasks(1), None, 2, 3, seed=1))
    before = trainer.dev_accuracy()
    history = trainer.train()
    assert len(history) == 12
    assert trainer.dev_accuracy() > before
