"""`xmeta explain`: which source languages a target language draws on through source attention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ArgumentError
from ..fileio import atomic_directory, write_json
from ..modeling.pooling import mean_pool


@dataclass
class SourceProfile:
    """Attention mass per source (mean over real tokens, then over layers) and task-embedding cosines
    (centred on the mean of the sources, so that the shared component does not hide the differences)."""

    lang: str
    adapter: str
    texts: int
    sources: list[str]
    attention: list[float]
    cosine: list[float]

    def ranked(self) -> list[tuple[str, float, float]]:
        return sorted(zip(self.sources, self.attention, self.cosine), key=lambda row: -row[1])

    def markdown(self) -> str:
        lines = [f"Source attention for `{self.lang}` (adapter `{self.adapter}`, {self.texts} texts)", "",
                 "| source | attention mass | task-embedding cosine |", "|---|---:|---:|"]
        lines += [f"| {src} | {mass:.3f} | {cos:.3f} |" for src, mass, cos in self.ranked()]
        return "\n".join(lines) + "\n"


@torch.inference_mode()
def explain_sources(model, texts: Sequence, lang: str, adapter: str, batch_size: int = 32) -> SourceProfile:
    """Run ``texts`` (strings, or word lists for a tagger) through ``adapter`` recording the attention
    of every adapted layer."""
    transfer = model.source_transfer
    if transfer is None:
        raise ArgumentError("this model was meta-trained without source attention (--source_attention on)")
    if not texts:
        raise ArgumentError(f"explain {lang}: no texts")
    previous = model.active_language
    model.use_language(adapter)
    model.eval()
    mass = torch.zeros(len(transfer.bank.languages))
    tokens, pooled = 0, []
    encoder = model.peft.base_model.model.encoder
    try:
        for start in range(0, len(texts), batch_size):
            inputs = model.encode(list(texts[start : start + batch_size]), lang)
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            with transfer.attention.recording() as seen:
                model(**inputs)
            per_layer = torch.stack([(weights * mask).sum((0, 1)) for _, weights in seen]).mean(0)
            mass += per_layer
            tokens += int(mask.sum())
            with model.peft.disable_adapter(), transfer.disabled():
                hidden = encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
            pooled.append(mean_pool(hidden, inputs["attention_mask"]))
    finally:
        model.use_language(previous)
    task_embedding = torch.cat(pooled).mean(0, keepdim=True)
    cosine = transfer.attention.task_similarity(task_embedding)
    return SourceProfile(lang, adapter, len(texts), list(transfer.bank.languages), (mass / tokens).tolist(), cosine.tolist())


def write_profile(profile: SourceProfile, directory: Path, overwrite: bool) -> Path:
    """``explain.json``, ``explain.md`` and a bar chart ``source_attention.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = profile.ranked()
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        write_json(tmp / "explain.json", profile.__dict__)
        (tmp / "explain.md").write_text(profile.markdown(), encoding="utf-8")
        fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(ranked)), 3.2))
        ax.bar([r[0] for r in ranked], [r[1] for r in ranked], color="tab:blue")
        ax.set_ylabel("attention mass")
        ax.set_title(f"{profile.lang}: what it borrows from each source language")
        ax.tick_params(axis="x", rotation=60)
        fig.tight_layout()
        fig.savefig(tmp / "source_attention.png", dpi=120)
        plt.close(fig)
    return directory
