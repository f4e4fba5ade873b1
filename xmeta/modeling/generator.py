"""Generated adapters (issue #14): a small hypernetwork maps a language's representation to its LoRA update
and head correction, in the spirit of MAD-G and Hyper-X.

A language is represented by how it relates to the source languages: r ∈ Δ^S, the URIEL routing prior over the
sources (softmax of typological similarity / τ, `xmeta.data.typology.routing_prior`); where URIEL lacks the
language, the same softmax over the centred cosines of its task embedding (mean pooled encoder output of its
texts) to the sources'; with neither, uniform. A source language is represented leave-one-language-out (its own
entry 0), as a target the generator has not seen. Coordinates relative to the sources generalise to any language
with a representation, where a raw 4,000-dimensional URIEL vector would let 30 source languages be memorised.

    g(r) = tanh(W₁ r E + b₁)              (E: one learned embedding per source language)
    δ(r) = W₂ (g(r) − g(r̄)) / √h          (W₂ starts at zero: the generator starts as "no update")

r̄ is the mean of the sources' representations: what every language would get is θ's to learn, not the
generator's (as bank centring removes the sources' shared adapter), so a language like the average source
gets θ itself and a target's update is only what sets its neighbourhood apart.

δ is one vector holding an additive update of every fast tensor of θ (each adapted layer's LoRA A and B, the
head), so an inner loop of language l starts at φ₀ = θ + δ(r_l). It is meta-trained in the outer loop: the
first-order meta-gradient of the generator is the query gradient at φ_T pulled back through δ (as θ's is the
query gradient itself), `AdapterGenerator.pullback`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data.typology import routing_prior

REPRESENTATIONS = ("uriel", "task_embedding", "uniform")  # how a language's r was found, best first


def softmax_weights(similarity: torch.Tensor, temperature: float, excluded: int | None = None) -> torch.Tensor:
    """softmax(similarity / τ) over the sources, ``excluded`` (a source's own index) given exactly 0."""
    logits = similarity / temperature
    if excluded is not None:
        logits = logits.clone()
        logits[excluded] = float("-inf")
    return logits.softmax(-1)


class AdapterGenerator(nn.Module):
    """Language representation over S sources → additive update of θ's fast tensors (``slots``: name → shape,
    the names of the meta adapter's tensors)."""

    def __init__(self, languages: Sequence[str], slots: dict[str, torch.Size], hidden_size: int, dim: int,
                 hidden: int, temperature: float) -> None:
        super().__init__()
        self.languages = list(languages)
        self.slots = dict(slots)
        self.temperature = temperature
        self.language_embeddings = nn.Parameter(torch.randn(len(self.languages), dim) / math.sqrt(dim))
        self.hidden = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, sum(math.prod(shape) for shape in self.slots.values()), bias=False)
        nn.init.zeros_(self.out.weight)
        # row l: source l's representation, leave-one-language-out (set before meta-training; saved with θ)
        self.register_buffer("source_representations", torch.zeros(len(self.languages), len(self.languages)))
        # the sources' task embeddings (mean pooled plain-encoder output): the fallback where URIEL lacks a language
        self.register_buffer("task_embeddings", torch.zeros(len(self.languages), hidden_size))
        self.register_buffer("centre", torch.zeros(len(self.languages)))  # r̄: the sources' mean representation

    # ------------------------------------------------------------ representations
    @torch.no_grad()
    def set_sources(self, task_embeddings: torch.Tensor) -> None:
        """Fill the sources' task embeddings and leave-one-out representations (URIEL, else task embedding)."""
        self.task_embeddings.copy_(task_embeddings)
        for i, lang in enumerate(self.languages):
            others = [j for j in range(len(self.languages)) if j != i]
            prior = routing_prior(lang, [self.languages[j] for j in others], self.temperature) if others else None
            row = torch.zeros(len(self.languages))
            if prior is not None:
                row[others] = torch.as_tensor(prior, dtype=torch.float32)
            elif others:
                row = self.task_weights(task_embeddings[i], excluded=i)
            self.source_representations[i].copy_(row)
        self.centre.copy_(self.source_representations.mean(0))

    def task_weights(self, embedding: torch.Tensor, excluded: int | None = None) -> torch.Tensor:
        """softmax over the sources of the cosine of ``embedding`` to their task embeddings, all centred on the
        sources' mean (what every language's mean output shares says nothing about which is close)."""
        centre = self.task_embeddings.mean(0, keepdim=True)
        cosine = nn.functional.cosine_similarity(embedding.unsqueeze(0) - centre, self.task_embeddings - centre, dim=-1)
        return softmax_weights(cosine, self.temperature, excluded)

    def representation(self, lang: str, task_embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
        """r [S] of ``lang`` and how it was found (`REPRESENTATIONS`). A source keeps its leave-one-out row;
        ``task_embedding`` (of the language's texts) is the fallback where URIEL lacks the language."""
        if lang in self.languages:
            row = self.source_representations[self.languages.index(lang)]
            if bool(row.sum() > 0):
                return row, "uriel"
        prior = routing_prior(lang, self.languages, self.temperature)
        if prior is not None:
            return torch.as_tensor(np.asarray(prior), dtype=torch.float32), "uriel"
        if task_embedding is not None:
            return self.task_weights(task_embedding).detach(), "task_embedding"
        return torch.full((len(self.languages),), 1.0 / len(self.languages)), "uniform"

    # ------------------------------------------------------------------ updates
    def forward(self, representation: torch.Tensor) -> dict[str, torch.Tensor]:
        """δ(r), split into one tensor per slot (keyed as ``slots``)."""
        e = torch.stack([representation, self.centre]).to(self.language_embeddings.dtype) @ self.language_embeddings
        g = torch.tanh(self.hidden(e))
        flat = self.out(g[0] - g[1]) / math.sqrt(self.hidden.out_features)
        return dict(zip(self.slots, (part.view(shape) for part, shape in
                                     zip(flat.split([math.prod(s) for s in self.slots.values()]), self.slots.values()))))

    def pullback(self, updates: dict[str, torch.Tensor],
                 gradients: dict[str, torch.Tensor]) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """First-order gradients of the generator's parameters: Σ_slot ⟨∂L/∂φ_slot, ∂δ_slot/∂ψ⟩, from the
        ``updates`` a forward made (with their graph) and the loss ``gradients`` of the tensors they moved."""
        used = [name for name in updates if gradients.get(name) is not None]
        if not used:
            return []
        params = [p for p in self.parameters() if p.requires_grad]
        grads = torch.autograd.grad([updates[n] for n in used], params, grad_outputs=[gradients[n] for n in used],
                                    allow_unused=True)
        return [(p, g) for p, g in zip(params, grads) if g is not None]
