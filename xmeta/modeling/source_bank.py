"""The source-language bank of source attention: each meta-training source language's LoRA adapter, frozen
within an episode and refreshed from its inner-loop results (`SourceLanguageBank`), and its slots as
ordinary peft adapter folders (`bank_folder_state`). `xmeta.modeling.source_attention` mixes them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

PEFT_PREFIX = "peft."


class SourceLanguageBank(nn.Module):
    """Frozen LoRA A/B of each source language, stacked per adapted linear: A [S, r, in], B [S, out, r]."""

    def __init__(self, languages: list[str], shapes: dict[str, tuple[int, int]], rank: int, scaling: float) -> None:
        super().__init__()
        self.languages = list(languages)
        self.targets = list(shapes)
        self.scaling = scaling
        self.filled = [False] * len(languages)
        self.touched: set[int] = set()  # slots refreshed by this process since the last `sync`
        self.version = 0  # counts changes of the slots (what is derived from them knows when to recompute)
        self._staged: list | None = None
        self._reader: Callable[[str], dict[str, torch.Tensor]] | None = None
        for j, (fan_in, fan_out) in enumerate(shapes.values()):
            self.register_buffer(f"A_{j}", torch.zeros(len(languages), rank, fan_in), persistent=False)
            self.register_buffer(f"B_{j}", torch.zeros(len(languages), fan_out, rank), persistent=False)

    def defer_loading(self, read: Callable[[str], dict[str, torch.Tensor]]) -> None:
        """Fill the slots from ``read(lang)`` (a saved peft adapter state) on first use, not at load."""
        self._reader = read

    def ensure_loaded(self) -> None:
        if self._reader is None:
            return
        read, self._reader = self._reader, None
        for lang in self.languages:
            state = read(lang)
            lora = {t: (state[f"{peft_key(t)}.lora_A.weight"], state[f"{peft_key(t)}.lora_B.weight"]) for t in self.targets}
            self.store(lang, lora, momentum=1.0)

    def slot(self, lang: str) -> int:
        return self.languages.index(lang)

    def tensors(self, target: str) -> tuple[torch.Tensor, torch.Tensor]:
        j = self.targets.index(target)
        return getattr(self, f"A_{j}"), getattr(self, f"B_{j}")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Stage every `store` until the block ends: the bank stays frozen for a whole meta-step,
        so the result cannot depend on the order (or the process) in which episodes ran."""
        self._staged = []
        try:
            yield
        finally:
            staged, self._staged = self._staged, None
            for args in staged:
                self.store(*args)

    @torch.no_grad()
    def store(self, lang: str, lora: dict[str, tuple[torch.Tensor, torch.Tensor]], momentum: float = 1.0) -> None:
        """Blend a language's LoRA (per target: A, B) into its slot: ``slot ← (1-m) slot + m new``.

        The first result for a slot is taken whole; later ones are averaged in, which smooths the
        noise of few-shot inner loops while following θ as it moves.
        """
        if self._staged is not None:
            self._staged.append((lang, {t: (a.detach().clone(), b.detach().clone()) for t, (a, b) in lora.items()}, momentum))
            return
        s = self.slot(lang)
        m = 1.0 if not self.filled[s] else momentum
        for target, (a, b) in lora.items():
            bank_a, bank_b = self.tensors(target)
            bank_a[s].mul_(1 - m).add_(a.to(bank_a.dtype), alpha=m)
            bank_b[s].mul_(1 - m).add_(b.to(bank_b.dtype), alpha=m)
        self.filled[s] = True
        self.touched.add(s)
        self.version += 1

    @torch.no_grad()
    def sync(self, sum_: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Make every process's bank identical after a distributed meta-step.

        Each slot is refreshed by at most one process per step (a meta-batch has distinct
        languages), so summing "refreshed slot or zero" over processes gives the new slots.
        """
        touched = torch.zeros(len(self.languages))
        touched[list(self.touched)] = 1.0
        sum_(touched)
        refreshed = touched > 0
        mine = torch.zeros(len(self.languages), dtype=torch.bool)
        mine[list(self.touched)] = True
        for j in range(len(self.targets)):
            for name in (f"A_{j}", f"B_{j}"):
                bank = getattr(self, name)
                contribution = bank * mine.view(-1, *[1] * (bank.dim() - 1)).to(bank.dtype)
                sum_(contribution)
                bank[refreshed] = contribution[refreshed]
        for s in refreshed.nonzero().flatten().tolist():
            self.filled[s] = True
        self.touched.clear()
        self.version += 1

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Slots and which are filled, for training checkpoints (the bank is not a parameter)."""
        return {**{name: buf.detach().clone() for name, buf in self.named_buffers()},
                "filled": torch.tensor(self.filled, dtype=torch.uint8)}

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, buf in self.named_buffers():
            buf.copy_(tensors[name])
        self.filled = [bool(v) for v in tensors["filled"].tolist()]
        self.touched.clear()
        self.version += 1

    def lora_of(self, lang: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        s = self.slot(lang)
        return {t: (self.tensors(t)[0][s], self.tensors(t)[1][s]) for t in self.targets}



def peft_key(target: str) -> str:
    """The name peft saves a target's LoRA under: bank targets are named from the xmeta model,
    whose peft model is its ``peft`` attribute."""
    return target.removeprefix(PEFT_PREFIX)


def bank_folder_state(bank: SourceLanguageBank, lang: str) -> dict[str, torch.Tensor]:
    """A bank slot as a peft adapter state dict (keys as peft saves them, without adapter name)."""
    state = {}
    for target, (a, b) in bank.lora_of(lang).items():
        state[f"{peft_key(target)}.lora_A.weight"] = a.contiguous().clone()
        state[f"{peft_key(target)}.lora_B.weight"] = b.contiguous().clone()
    return state
