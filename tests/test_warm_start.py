"""``--init joint``: θ trains on every source row like B1 (same trainer), selected on source dev rows."""

from __future__ import annotations

import torch

from tests.conftest import TOY_WORDS, toy_rows
from xmeta.data import LabelMap, LanguageTask
from xmeta.meta.warm_start import JointWarmStart


def _tasks(seed: int) -> dict[str, LanguageTask]:
    label_map = LabelMap(tuple(TOY_WORDS))
    out = {}
    for lang in ("aa", "bb"):
        rows = toy_rows(lang, 6, seed)
        out[lang] = LanguageTask(lang, [r["text"] for r in rows], label_map.encode([r["label"] for r in rows], lang), label_map)
    return out


def test_joint_stage_trains_theta_and_records_its_budget(tiny_model):
    before = {n: p.detach().clone() for n, p in tiny_model.fast_parameters().items()}
    record = JointWarmStart(steps=4, batch_size=8, lr=1e-2, dev_per_class=2).run(tiny_model, _tasks(0), _tasks(1))
    assert record["example_passes"] == 32 and record["best_dev"] is not None and 1 <= record["best_step"] <= 4
    assert any(not torch.equal(before[n], p) for n, p in tiny_model.fast_parameters().items())
    assert tiny_model.training  # ready for meta-training
