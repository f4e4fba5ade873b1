"""Checkpoints: a run stopped by SIGTERM and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from xmeta.cli import main
from xmeta.meta.checkpoint import OPTIMIZER_NAME, PARAMS_NAME, STATE_NAME
from xmeta.meta.trainer import MetaTrainer


def argv(train, encoder, out, *extra: str) -> list[str]:
    return ["meta-train", "--train_file", str(train), "--encoder", str(encoder), "--out", str(out), "--steps", "5",
            "--meta_batch", "2", "--k_shot", "2", "--k_query", "2", "--lora_r", "2", "--inner_steps", "1", "--checkpoint_every", "2", *extra]


@pytest.mark.parametrize("model_flags", [[], ["--source_attention", "on", "--lora_layers", "1"], ["--learn_inner_lr"],
                                         ["--meta_embedding", "on", "--lora_layers", "1"],
                                         ["--prototype_head", "on", "--init", "joint", "--joint_steps", "3"]],
                         ids=["plain", "attention", "inner-rates", "meta-embedding", "prototype-warm-start"])
def test_sigterm_then_resume_equals_uninterrupted(tmp_path, tiny_encoder_dir, toy_jsonl, monkeypatch, capsys, model_flags):
    train = toy_jsonl(["aa", "bb", "cc"], per_class=8)
    assert main(argv(train, tiny_encoder_dir, tmp_path / "whole", *model_flags)) == 0

    step = MetaTrainer.step

    def signalled_during_step_3(self: MetaTrainer):
        if self.completed == 2:
            signal.raise_signal(signal.SIGTERM)  # the handler lets step 3 finish
        return step(self)

    monkeypatch.setattr(MetaTrainer, "step", signalled_during_step_3)
    out = tmp_path / "cut"
    capsys.readouterr()
    assert main(argv(train, tiny_encoder_dir, out, *model_flags)) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("xmeta meta-train: error: stopped by SIGTERM after step 3; checkpoint")
    assert not out.exists()
    checkpoint = tmp_path / "cut.checkpoint"
    state = json.loads((checkpoint / STATE_NAME).read_text())
    assert state["step"] == 3 and {p.name for p in checkpoint.iterdir()} == {STATE_NAME, PARAMS_NAME, OPTIMIZER_NAME}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored

    monkeypatch.setattr(MetaTrainer, "step", step)
    assert main(argv(train, tiny_encoder_dir, out, *model_flags, "--resume")) == 0
    weights = ["model.safetensors"] + [f"bank/{lang}/adapter_model.safetensors" for lang in ("aa", "bb", "cc")
                                     if "--source_attention" in model_flags]
    weights += ["meta_embedding.safetensors"] if "--meta_embedding" in model_flags else []  # its own AdamW group
    if "--init" in model_flags:  # the joint stage ran once, before step 0's checkpoint, and its budget is on record
        for folder in (tmp_path / "whole", out):
            record = json.loads((folder / "trainer_state.json").read_text())["warm_start"]
            assert record["kind"] == "joint" and record["example_passes"] == 3 * 32
    for name in weights:
        whole, resumed = load_file(tmp_path / "whole" / name), load_file(out / name)
        assert resumed.keys() == whole.keys()
        assert all(torch.equal(whole[n], resumed[n]) for n in whole), name


def test_resume_from_named_folder_and_longer_run(tmp_path, tiny_encoder_dir, toy_jsonl):
    train = toy_jsonl(["aa", "bb", "cc"], per_class=8)
    assert main(argv(train, tiny_encoder_dir, tmp_path / "a")) == 0  # checkpoint at step 4
    longer = argv(train, tiny_encoder_dir, tmp_path / "b", "--resume", str(tmp_path / "a.checkpoint"))
    longer[longer.index("--steps") + 1] = "6"
    assert main(longer) == 0
    state = json.loads((tmp_path / "b.checkpoint" / STATE_NAME).read_text())
    assert state["step"] == 6
    # a resumed run's time counts the steps its checkpoint already holds
    from xmeta.meta.checkpoint import checkpoint_seconds
    assert checkpoint_seconds(tmp_path / "b.checkpoint") == pytest.approx(sum(h["seconds"] for h in state["history"]))
    assert len(state["history"]) == 6 and checkpoint_seconds(tmp_path / "b.checkpoint") > 0
