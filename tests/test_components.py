"""The component protocol: a part registered in one line (here, in the test) is built, trained at its own
rate, checkpointed, resumed, saved and loaded by the unchanged model, trainer and folder code, a
meta-training run calls its hooks before and after training, and `meta-train` takes its own flags."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tests.conftest import TOY_WORDS, toy_rows
from tests.test_fomaml import _model
from xmeta import XMetaForSequenceClassification
from xmeta.data import EpisodeSampler, LabelMap, LanguageTask
from xmeta.errors import ArgumentError
from xmeta.meta import MetaTrainer, MetaTrainingArguments
from xmeta.meta.checkpoint import PARAMS_NAME
from xmeta.modeling import components as registry
from xmeta.modeling.components import Component, ComponentFlags

TOY_LR = 0.0123
COUNTS_NAME = "toy_counts.json"


class LogitGain(nn.Module):
    """A learned gain on the logits: a slow weight, ``start`` at init (1: no change)."""

    def __init__(self, start: float = 1.0) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(start))


@dataclass
class ToyGainFlags(ComponentFlags):
    toy_gain: Literal["on", "off"] = field(default="off", metadata={"help": "scale the logits by a learned gain"})
    toy_gain_start: float = field(default=1.0, metadata={"help": "the gain's value before meta-training"})

    def validate(self) -> None:
        if not self.toy_gain_start > 0:
            raise ArgumentError(f"--toy_gain_start must be positive (got {self.toy_gain_start})")

    def config_fields(self) -> dict[str, Any]:
        return {"toy_gain": self.toy_gain == "on", "toy_gain_start": self.toy_gain_start}


class ToyGain(Component):
    """Scales the logits by a learned gain and counts the episodes it saw (non-parameter state)."""

    name = "toy_gain"
    flag = "toy_gain"
    attribute = "logit_gain"
    checkpoint_prefix = "toy."
    model_flags = ToyGainFlags

    def __init__(self, module: LogitGain) -> None:
        super().__init__(module)
        self.episodes = 0
        self.hooks: list[list] = []  # [hook, episodes seen by then, the run's languages, seed, adapt steps]

    @classmethod
    def build(cls, model, network) -> ToyGain:
        model.logit_gain = LogitGain(getattr(model.config, "toy_gain_start", 1.0))
        model.peft.register_forward_hook(lambda _module, _args, logits: logits * model.logit_gain.gain)
        return cls(model.logit_gain)

    def before_meta_training(self, model, run) -> None:
        self.hooks.append(["before", self.episodes, sorted(run.tasks), run.seed, run.adapt_steps])

    def after_meta_training(self, model, run) -> None:
        self.hooks.append(["after", self.episodes, sorted(run.tasks), run.seed, run.adapt_steps])

    def param_groups(self, args) -> list[dict]:
        return [{"params": [self.module.gain], "lr": TOY_LR}]

    @contextlib.contextmanager
    def episode(self, lang: str) -> Iterator[None]:
        yield
        self.episodes += 1

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {"episodes": torch.tensor(self.episodes)}

    def load_checkpoint_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.episodes = int(tensors["episodes"])

    def save(self, model, folder) -> None:
        (folder / COUNTS_NAME).write_text(json.dumps({"episodes": self.episodes, "hooks": self.hooks}), encoding="utf-8")

    def load(self, model, folder) -> None:
        self.episodes = json.loads((folder / COUNTS_NAME).read_text(encoding="utf-8"))["episodes"]


@pytest.fixture
def registered(monkeypatch):
    """The one registration line."""
    monkeypatch.setattr(registry, "COMPONENTS", [*registry.COMPONENTS, ToyGain])


def _sampler(seed: int = 0) -> EpisodeSampler:
    label_map = LabelMap(tuple(TOY_WORDS))
    tasks = {}
    for lang in ("aa", "bb", "cc"):
        rows = toy_rows(lang, 6, seed)
        tasks[lang] = LanguageTask(lang, [r["text"] for r in rows], label_map.encode([r["label"] for r in rows], lang), label_map)
    return EpisodeSampler(tasks, None, 2, 2, seed=seed)


def _trainer(model, steps: int) -> MetaTrainer:
    args = MetaTrainingArguments(steps=steps, meta_batch=2, k_shot=2, k_query=2, inner_steps=1, eval_every=0, seed=0)
    return MetaTrainer(model, _sampler(), args)


def test_a_registered_component_trains_checkpoints_saves_and_loads(registered, tiny_encoder_dir, tmp_path):
    model = _model(tiny_encoder_dir, prototype_head=True, toy_gain=True)
    toy = model.components["toy_gain"]
    assert list(model.components) == ["prototype_head", "toy_gain"]  # registry order
    assert "logit_gain.gain" in model.shared_state()  # saved with θ under its attribute

    trainer = _trainer(model, steps=3)
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups[1:]] == [trainer.args.inner_rate_lr, TOY_LR]
    assert groups[2]["params"] == [model.logit_gain.gain]
    assert all(p is not model.logit_gain.gain for g in groups[:2] for p in g["params"])

    trainer.args.steps = 2
    trainer.train()
    assert toy.episodes == 4  # every episode of 2 steps ran inside its hook
    assert model.logit_gain.gain.item() != 1.0  # the query loss reached it: it trains as a slow weight
    trainer.checkpoint(tmp_path / "ckpt")
    assert load_file(tmp_path / "ckpt" / PARAMS_NAME)["toy.episodes"].item() == 4

    resumed_model = _model(tiny_encoder_dir, prototype_head=True, toy_gain=True)
    resumed = _trainer(resumed_model, steps=3)
    resumed.resume(tmp_path / "ckpt")
    assert resumed_model.components["toy_gain"].episodes == 4
    assert torch.equal(resumed_model.logit_gain.gain, model.logit_gain.gain)
    trainer.args.steps = 3
    trainer.train()
    resumed.train()
    assert resumed_model.components["toy_gain"].episodes == toy.episodes == 6
    assert torch.equal(resumed_model.logit_gain.gain, model.logit_gain.gain)

    model.save_pretrained(tmp_path / "m")
    assert "logit_gain.gain" in load_file(tmp_path / "m" / "model.safetensors")
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.components["toy_gain"].episodes == 6
    assert torch.equal(loaded.logit_gain.gain, model.logit_gain.gain)


def test_a_component_that_is_off_is_none_and_has_no_group(registered, tiny_encoder_dir):
    model = _model(tiny_encoder_dir)
    assert model.logit_gain is None and "toy_gain" not in model.components
    assert len(_trainer(model, steps=1).optimizer.param_groups) == 1


class ToyGainAlwaysOn(ToyGain):
    """The toy part in every model (whatever its flag says)."""

    @classmethod
    def enabled(cls, config) -> bool:
        return True


def test_meta_training_calls_each_component_before_and_after_training(monkeypatch, tiny_encoder_dir, toy_jsonl, tmp_path):
    from xmeta.cli import main

    monkeypatch.setattr(registry, "COMPONENTS", [*registry.COMPONENTS, ToyGainAlwaysOn])
    train = toy_jsonl(["aa", "bb", "cc"], per_class=4, name="train.jsonl")
    assert main(["meta-train", "--train_file", str(train), "--encoder", str(tiny_encoder_dir), "--out", str(tmp_path / "m"),
                 "--steps", "2", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--eval_every", "0",
                 "--lora_r", "2", "--seed", "5", "--adapt_steps", "2"]) == 0
    hooks = json.loads((tmp_path / "m" / COUNTS_NAME).read_text(encoding="utf-8"))["hooks"]
    # before: on the fresh model; after: once, on the trained θ (2 steps × 2 episodes), before the save
    assert hooks == [["before", 0, ["aa", "bb", "cc"], 5, 2], ["after", 4, ["aa", "bb", "cc"], 5, 2]]


def _meta_train(train, encoder, out, *flags: str) -> int:
    from xmeta.cli import main

    return main(["meta-train", "--train_file", str(train), "--encoder", str(encoder), "--out", str(out), "--steps", "1",
                 "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--eval_every", "0", "--lora_r", "2",
                 "--adapt_steps", "1", *flags])


def test_meta_train_takes_a_registered_components_flags_into_the_model_config(registered, tiny_encoder_dir, toy_jsonl,
                                                                               tmp_path, capsys):
    from xmeta.cli import main

    train = toy_jsonl(["aa", "bb", "cc"], per_class=4, name="train.jsonl")
    assert _meta_train(train, tiny_encoder_dir, tmp_path / "m", "--toy_gain", "on", "--toy_gain_start", "0.5") == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    assert config["toy_gain"] is True and config["toy_gain_start"] == 0.5
    loaded = XMetaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert list(loaded.components) == ["prototype_head", "toy_gain"]
    assert 0.3 < loaded.logit_gain.gain.item() < 0.7  # started at the flag's 0.5, then one meta-step at its own rate

    with pytest.raises(SystemExit):
        main(["meta-train", "--help"])
    assert "--toy_gain {on,off}" in capsys.readouterr().out
    capsys.readouterr()
    assert _meta_train(train, tiny_encoder_dir, tmp_path / "bad", "--toy_gain", "on", "--toy_gain_start", "0") == 2
    assert capsys.readouterr().err.strip() == "xmeta meta-train: error: --toy_gain_start must be positive (got 0.0)"


def test_an_unregistered_components_flag_is_refused(tiny_encoder_dir, toy_jsonl, tmp_path, capsys):
    train = toy_jsonl(["aa", "bb", "cc"], per_class=4, name="train.jsonl")
    with pytest.raises(SystemExit) as exc:
        _meta_train(train, tiny_encoder_dir, tmp_path / "m", "--toy_gain", "on")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--toy_gain" in err
