"""Run `xmeta` (argv after DUMP_DIR) in one process of a launch; each process then writes its
trainable parameters to DUMP_DIR/rank<r>.safetensors, so a test can compare processes."""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

from xmeta.cli import main
from xmeta.meta.trainer import MetaTrainer


def dump_after_training(dump_dir: Path) -> None:
    train = MetaTrainer.train

    def train_and_dump(self: MetaTrainer, *args: object, **kwargs: object):
        history = train(self, *args, **kwargs)
        state = {n: p.detach().cpu().contiguous() for n, p in self.named_trainable().items()}
        if self.model.source_transfer is not None:  # the bank is state too, and must agree across processes
            state.update({f"bank.{n}": t for n, t in self.model.source_transfer.bank.state_tensors().items()})
        save_file(state, dump_dir / f"rank{self.processes.rank}.safetensors")
        return history

    MetaTrainer.train = train_and_dump


if __name__ == "__main__":
    dump_after_training(Path(sys.argv[1]))
    raise SystemExit(main(sys.argv[2:]))
