"""Two CPU processes (gloo, launched by torchrun) take the same outer steps as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xmeta.distributed import Processes

WORKER = Path(__file__).with_name("distributed_worker.py")


def meta_train_argv(train: Path, encoder: Path, out: Path, *flags: str) -> list[str]:
    # 3 languages per meta-batch over 2 processes: an uneven share (rank 0 runs episodes 0 and 2)
    return ["meta-train", "--train_file", str(train), "--encoder", str(encoder), "--out", str(out), "--steps", "3",
            "--meta_batch", "3", "--k_shot", "2", "--k_query", "2", "--lora_r", "2", "--checkpoint_every", "2", *flags]


def test_share_takes_every_world_th_item():
    items = list(range(7))
    assert [Processes(rank=r, world=3).share(items) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]


@pytest.mark.parametrize("flags", [[], ["--source_attention", "on", "--lora_layers", "1"], ["--learn_inner_lr"]],
                         ids=["plain", "attention", "inner-rates"])
def test_two_processes_equal_each_other_and_one_process(tmp_path, tiny_encoder_dir, toy_jsonl, monkeypatch, flags):
    train = toy_jsonl(["aa", "bb", "cc", "dd"], per_class=8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[1])}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
              str(tmp_path), *meta_train_argv(train, tiny_encoder_dir, tmp_path / "two", *flags)]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("saved ") == 1  # only the main process reports and writes
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(rank0[n], rank1[n]) for n in rank0)
    assert (tmp_path / "two" / "model.safetensors").is_file() and (tmp_path / "two.checkpoint").is_dir()

    single = tmp_path / "single"
    single.mkdir()
    sys.path.insert(0, str(WORKER.parent))
    monkeypatch.setattr(sys, "path", sys.path)
    from distributed_worker import dump_after_training

    from xmeta.cli import main
    from xmeta.meta.trainer import MetaTrainer

    monkeypatch.setattr(MetaTrainer, "train", MetaTrainer.train)  # undone after the test
    dump_after_training(single)
    assert main(meta_train_argv(train, tiny_encoder_dir, tmp_path / "one", *flags)) == 0
    one = load_file(single / "rank0.safetensors")
    assert max((one[n] - rank0[n]).abs().max().item() for n in one) < 1e-6
