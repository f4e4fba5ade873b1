"""`xmeta explain`: which source languages a target language draws on through source attention, and what the
adapter generator reads for it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.typology import language_similarity, routing_prior, uriel_code
from ..errors import ArgumentError
from ..fileio import atomic_directory, write_json


NO_URIEL = "no URIEL entry: task embedding only"


@dataclass
class SourceProfile:
    """Attention mass per source (mean over real tokens, then over layers), task-embedding cosines (centred on
    the mean of the sources, so that the shared component does not hide the differences), and what URIEL says:
    the typological similarity of each source to the target and the routing prior made from it (``None`` where
    URIEL lacks the source or the target; ``uriel`` names the ISO 639-3 code used for each language)."""

    lang: str
    adapter: str
    texts: int
    sources: list[str]
    attention: list[float]
    cosine: list[float]
    typology: list[float | None]
    prior: list[float] | None
    uriel: dict[str, str | None]
    mixer: str = "attention"  # what mixed the bank (`attention` holds its weights whatever it is)

    def ranked(self) -> list[tuple[str, float, float, float | None, float | None]]:
        prior = self.prior or [None] * len(self.sources)
        return sorted(zip(self.sources, self.attention, self.cosine, self.typology, prior), key=lambda row: -row[1])

    def markdown(self) -> str:
        codes = ", ".join(f"{lang} → {self.uriel[lang] or 'none'}" for lang in [self.lang, *self.sources])
        mixed_by = "Source attention" if self.mixer == "attention" else f"Source bank mixed by {self.mixer}"
        lines = [f"{mixed_by} for `{self.lang}` (adapter `{self.adapter}`, {self.texts} texts)", ""]
        if self.uriel[self.lang] is None:
            lines += [f"`{self.lang}`: {NO_URIEL}", ""]
        weight = "attention mass" if self.mixer == "attention" else f"{self.mixer} weight"
        lines += [f"| source | {weight} | task-embedding cosine | typological similarity | typology prior |",
                  "|---|---:|---:|---:|---:|"]
        for src, mass, cos, typ, prior in self.ranked():
            typ_cell = NO_URIEL if self.uriel[src] is None else "-" if typ is None else f"{typ:.3f}"
            prior_cell = "-" if prior is None else f"{prior:.3f}"
            lines.append(f"| {src} | {mass:.3f} | {cos:.3f} | {typ_cell} | {prior_cell} |")
        lines += ["", f"URIEL codes (lang2vec): {codes}"]
        return "\n".join(lines) + "\n"


@dataclass
class GeneratorInput:
    """What the adapter generator reads for a language and what it makes of it: the representation ``weights``
    over the sources, how it was found (``representation``: uriel, task_embedding or uniform) and the size of
    the generated update relative to θ's fast tensors (‖δ‖ / ‖θ‖ over every tensor it makes an update for, a head
    the prototype head replaces included)."""

    lang: str
    representation: str
    sources: list[str]
    weights: list[float]
    update_norm: float

    def markdown(self) -> str:
        ranked = sorted(zip(self.sources, self.weights), key=lambda row: -row[1])
        lines = [f"Adapter generator input for `{self.lang}`: {self.representation} representation over the sources; "
                 f"generated update ‖δ‖/‖θ‖ = {self.update_norm:.3f}", "", "| source | weight |", "|---|---:|"]
        lines += [f"| {src} | {weight:.3f} |" for src, weight in ranked]
        return "\n".join(lines) + "\n"


@dataclass
class Explanation:
    """`xmeta explain`'s answer: source attention's profile and the generator's input, whichever the model has."""

    lang: str
    adapter: str
    texts: int
    sources: SourceProfile | None
    generator: GeneratorInput | None

    def markdown(self) -> str:
        return "\n".join(part.markdown() for part in (self.sources, self.generator) if part is not None)

    def to_dict(self) -> dict:
        """explain.json: the source profile's fields (when the model has source attention), then ``generator``."""
        head = self.sources.__dict__ if self.sources is not None else {"lang": self.lang, "adapter": self.adapter,
                                                                       "texts": self.texts}
        return {**head, "generator": None if self.generator is None else self.generator.__dict__}


@torch.no_grad()
def explain_generator(model, texts: Sequence, lang: str) -> GeneratorInput:
    """The generator's representation of ``lang`` (its texts' task embedding only where URIEL lacks it)."""
    component = model.components["adapter_generator"]
    representation, kind = component.representation_for(model, lang, texts)
    updates = component.module(representation)  # keyed by θ's (the meta adapter's) parameter names
    theta = dict(model.named_parameters())
    size = torch.stack([update.norm() for update in updates.values()]).norm()
    base = torch.stack([theta[name].norm() for name in updates]).norm()
    return GeneratorInput(lang, kind, list(component.module.languages), representation.tolist(),
                          float(size / base.clamp_min(1e-12)))


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
    tokens = 0
    try:
        for start in range(0, len(texts), batch_size):
            inputs = model.encode(list(texts[start : start + batch_size]), lang)
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            with transfer.attention.recording() as seen, model.reading(lang):
                model(**inputs)
            per_layer = torch.stack([(weights * mask).sum((0, 1)) for _, weights in seen]).mean(0)
            mass += per_layer
            tokens += int(mask.sum())
    finally:
        model.use_language(previous)
    cosine = transfer.attention.task_similarity(model.task_embedding(texts, lang).unsqueeze(0))
    sources = list(transfer.bank.languages)
    typology = [None if math.isnan(x) else x for x in language_similarity([lang], sources)[0].tolist()]
    prior = routing_prior(lang, sources)
    return SourceProfile(lang, adapter, len(texts), sources, (mass / tokens).tolist(), cosine.tolist(), typology,
                         None if prior is None else prior.tolist(), {code: uriel_code(code) for code in [lang, *sources]},
                         transfer.attention.mixer)


def write_explanation(explanation: Explanation, directory: Path, overwrite: bool) -> Path:
    """``explain.json``, ``explain.md`` and a bar chart: ``source_attention.png`` with source attention, else
    ``generator_input.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with atomic_directory(directory, overwrite=overwrite) as tmp:
        write_json(tmp / "explain.json", explanation.to_dict())
        (tmp / "explain.md").write_text(explanation.markdown(), encoding="utf-8")
        part = explanation.sources or explanation.generator
        fig, ax = plt.subplots(figsize=(max(5.5, 0.45 * len(part.sources)), 3.2))
        name = _draw_sources(ax, part) if explanation.sources is not None else _draw_generator(ax, part)
        ax.tick_params(axis="x", rotation=60)
        fig.tight_layout()
        fig.savefig(tmp / name, dpi=120)
        plt.close(fig)
    return directory


def _draw_sources(ax, profile: SourceProfile) -> str:
    """Attention mass (and the URIEL prior) per source, largest first; the file name of the chart."""
    ranked = profile.ranked()
    positions = range(len(ranked))
    ax.bar([i - 0.2 for i in positions], [r[1] for r in ranked], width=0.4, color="tab:blue", label="attention mass")
    if profile.prior is not None:
        ax.bar([i + 0.2 for i in positions], [r[4] for r in ranked], width=0.4, color="tab:orange",
               label="typology prior (URIEL)")
    ax.set_xticks(list(positions), [r[0] for r in ranked])
    ax.legend(fontsize="small")
    ax.set_ylabel("share of the target's borrowing")
    ax.set_title(f"{profile.lang}: what it borrows from each source language")
    return "source_attention.png"


def _draw_generator(ax, generator: GeneratorInput) -> str:
    """The generator's representation: its weight per source; the file name of the chart."""
    ax.bar(generator.sources, generator.weights, color="tab:green")
    ax.set_ylabel("weight in the representation")
    ax.set_title(f"{generator.lang}: the generator's input ({generator.representation})")
    return "generator_input.png"
