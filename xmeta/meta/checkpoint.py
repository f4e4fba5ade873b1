"""Training checkpoints: everything a resumed run needs to continue exactly where it stopped.

A checkpoint folder holds ``trainable.safetensors`` (θ, and the best-scoring θ so far under
``best.``), ``optimizer.safetensors`` (AdamW's tensors) and ``state.json`` (step, flags, history, AdamW hyper-parameters, the episode sampler's
and the python/numpy RNG states); the torch RNG states are uint8 tensors in
``trainable.safetensors``. Nothing is pickled, and the folder is replaced in one rename.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import ArgumentError, ModelFolderError
from ..fileio import atomic_directory, read_safetensors, write_json
from ..version import __version__

FORMAT = 1
STATE_NAME = "state.json"
PARAMS_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.safetensors"
RNG_PREFIX = "rng."
BEST_PREFIX = "best."  # the best-scoring θ so far (model selection on dev)
# flags a resumed run may change: they do not alter the sequence of updates
RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "dev_episodes")


@dataclass
class StepLog:
    step: int
    query_loss: float
    query_accuracy: float
    seconds: float
    dev_accuracy: float | None = None


@dataclass
class BestState:
    """The best dev score so far, its step and a copy of θ then."""

    step: int
    score: float
    weights: dict[str, torch.Tensor]


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {f"{RNG_PREFIX}torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"{RNG_PREFIX}cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    torch.set_rng_state(tensors[f"{RNG_PREFIX}torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith(f"{RNG_PREFIX}cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = state["python_random"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy_random"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _component_tensors(model) -> dict[str, torch.Tensor]:
    """The components' non-parameter state (e.g. source attention's bank), each under its prefix."""
    return {f"{c.checkpoint_prefix}{n}": t.cpu().contiguous()
            for c in model.components.values() if c.checkpoint_prefix for n, t in c.checkpoint_state().items()}


def save_checkpoint(directory: Path, trainer) -> None:
    """Write ``trainer``'s complete state to ``directory`` (a temporary sibling, then a rename)."""
    optimizer = trainer.optimizer.state_dict()
    opt_tensors, opt_values = {}, {}
    for index, slots in optimizer["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                opt_tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                opt_values[f"{index}.{key}"] = value
    params = {name: p.detach().cpu().contiguous() for name, p in trainer.named_trainable().items()}
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    state = {
        "format": FORMAT,
        "xmeta_version": __version__,
        "step": trainer.completed,
        "arguments": asdict(trainer.args),
        "history": [asdict(log) for log in trainer.history],
        "param_groups": optimizer["param_groups"],
        "optimizer_values": opt_values,
        "sampler": trainer.train_sampler.state_dict(),
        "python_random": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy_random": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "best": None if trainer.best is None else {"step": trainer.best.step, "score": trainer.best.score},
        "warm_start": trainer.warm_start,
    }
    best = {} if trainer.best is None else {f"{BEST_PREFIX}{n}": t.cpu().contiguous() for n, t in trainer.best.weights.items()}
    with atomic_directory(directory, overwrite=True) as tmp:
        save_file({**params, **best, **_rng_tensors(), **_component_tensors(trainer.model)}, tmp / PARAMS_NAME,
                  metadata={"xmeta_version": __version__})
        save_file(opt_tensors, tmp / OPTIMIZER_NAME, metadata={"xmeta_version": __version__})
        write_json(tmp / STATE_NAME, state)


def read_state(directory: Path) -> dict[str, Any]:
    """The checkpoint's ``state.json``, with a missing, corrupt or newer one named in one line."""
    path = directory / STATE_NAME
    if not directory.is_dir():
        raise ArgumentError(f"--resume: no checkpoint at {directory}")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{path}: not a readable checkpoint state ({err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise ModelFolderError(f"{path}: checkpoint format {found!r}, this xmeta reads format {FORMAT}")
    return state


def load_checkpoint(directory: Path, trainer) -> None:
    """Restore ``trainer`` (parameters, AdamW, sampler, RNGs, step, history) from ``directory``."""
    state = read_state(directory)
    current = asdict(trainer.args)
    for name, value in state["arguments"].items():
        if name not in RESUMABLE_CHANGES and current.get(name) != value:
            raise ArgumentError(f"--resume {directory}: it was made with --{name} {value}, "
                                f"this run has --{name} {current.get(name)}")
    if state["step"] > trainer.args.steps:
        raise ArgumentError(f"--resume {directory}: it is at step {state['step']}, beyond --steps {trainer.args.steps}")
    tensors = read_safetensors(directory / PARAMS_NAME)
    own = trainer.named_trainable()
    components = [c for c in trainer.model.components.values() if c.checkpoint_prefix]  # those with state
    names = {n for n in tensors if not n.startswith((RNG_PREFIX, BEST_PREFIX, *(c.checkpoint_prefix for c in components)))}
    if names != set(own) or any(tensors[n].shape != own[n].shape for n in own):
        culprit = sorted(names ^ set(own)) or [n for n in own if tensors[n].shape != own[n].shape]
        raise ModelFolderError(f"{directory / PARAMS_NAME}: does not fit this model ({culprit[0]})")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(tensors[name])
    for component in components:
        prefix = component.checkpoint_prefix
        component.load_checkpoint_state({n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)})
    slots: dict[int, dict[str, Any]] = {}
    for key, value in {**read_safetensors(directory / OPTIMIZER_NAME), **state["optimizer_values"]}.items():
        index, slot = key.split(".", 1)
        slots.setdefault(int(index), {})[slot] = value
    trainer.optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    trainer.train_sampler.load_state_dict(state["sampler"])
    trainer.completed = state["step"]
    trainer.history = [StepLog(**log) for log in state["history"]]
    best = state.get("best")
    trainer.best = None if best is None else BestState(best["step"], best["score"], {
        n: tensors[f"{BEST_PREFIX}{n}"].to(p.device) for n, p in own.items()})
    trainer.warm_start = state.get("warm_start")
    _restore_rng(tensors, state)


def checkpoint_seconds(directory: Path) -> float:
    """Seconds of work a checkpoint holds (its meta-steps and its warm-start stage): what a run resumed from
    it does not redo, so that the run's time can count them."""
    state = read_state(directory)
    return sum(log["seconds"] for log in state["history"]) + (state.get("warm_start") or {}).get("seconds", 0.0)
