"""Attention-based source-language transfer.

Every meta-training source language keeps a LoRA adapter in a frozen *bank* (`xmeta.modeling.source_bank`).
At every adapted linear layer the output gains an attention-weighted mix of the bank's deltas::

    h = W x + Δ_own(x) + Σ_l a_l(x) Δ_l(x),     a = softmax_l(<q(x), k_l> / √d / τ)   (per token)

``q`` (a small projection per layer), the keys ``k_l`` and the temperature ``τ`` are meta-learned
(slow weights of the outer loop); the bank is frozen inside an episode. In an episode of language
``l`` that language's own bank slot is masked out (leave-one-language-out), so the attention
learns to borrow for a language it has not seen — which is what a new target language is.

Routing (issue #14, both off by default): with *bank centring* the mix uses each slot's delta minus
the bank's mean delta, Σ_l a_l (Δ_l − Δ̄), so the attention chooses among what sets the sources apart
rather than the part they all share (as in GenKnowSub), and the queries read x minus the sources'
mean hidden state, as the keys already do (uncentred, the shared direction of q(x) made one source
win for every language). With a *routing prior* (``routing_prior`` [S, S]) an auxiliary KL loss
ties the attention of an episode of l to which sources typology says are close (`xmeta.modeling.routing`).

Plain mixers to compare the learned attention with (``mixer``): ``uniform`` gives every (unmasked) source the
same weight, ``nearest`` gives every token of a text the source(s) typologically nearest to the text's language
(``top_k``, default 1; weighted by the URIEL routing prior among them; ``nearness``, set per language by the
component), ``arrow`` routes each token by peft's Arrow rule on the bank's own adapters (`xmeta.modeling.arrow`);
none has anything to learn.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..scoped import attributes_set
from .arrow import arrow_config, arrow_logits, arrow_prototypes
from .source_bank import SourceLanguageBank

MIXERS = ("attention", "uniform", "nearest", "arrow")


class SourceLanguageAttention(nn.Module):
    """Per adapted layer: a query projection, one key per source language and a temperature."""

    def __init__(self, languages: list[str], layers: list[int], hidden: int, dim: int, top_k: int = 0,
                 centred_queries: bool = False, mixer: str = "attention") -> None:
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"source mixer must be one of {', '.join(MIXERS)} (got {mixer!r})")
        self.languages = list(languages)
        self.layers = list(layers)
        self.dim = dim
        self.mixer = mixer
        self.arrow = arrow_config(top_k) if mixer == "arrow" else None
        self.top_k = self.arrow.top_k if self.arrow else (top_k or 1) if mixer == "nearest" else top_k
        # nearest: log routing prior [S] of the language being read (None: unknown, every source alike)
        self.nearness: torch.Tensor | None = None
        # arrow: target name -> the bank's prototypes v_l [S, in] (set by `SourceTransfer`)
        self.prototypes: Callable[[str], torch.Tensor] | None = None
        self.query = nn.ModuleDict({str(i): nn.Linear(hidden, dim, bias=False) for i in layers})
        self.keys = nn.ParameterDict({str(i): nn.Parameter(torch.zeros(len(languages), dim)) for i in layers})
        self.log_tau = nn.Parameter(torch.zeros(len(layers)))
        for proj in self.query.values():
            nn.init.normal_(proj.weight, std=1.0 / math.sqrt(hidden))
        self.excluded: set[int] = set()
        self.register_buffer("task_embeddings", torch.zeros(len(languages), hidden))
        # row l: how much an episode of source l should draw on each other source (zeros: no prior, no loss)
        self.register_buffer("routing_prior", torch.zeros(len(languages), len(languages)))
        # per layer: the sources' mean hidden state, which centred queries subtract (see `weights`)
        self.register_buffer("query_centres", torch.zeros(len(layers), hidden))
        self.centred_queries = centred_queries
        self.recorded: list[tuple[int, torch.Tensor]] | None = None
        self._detach_recorded = True
        self._record_unmasked = False
        self._last: tuple[object, torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        """Forget the per-forward cache (a new forward pass starts, possibly on the same tensors)."""
        self._last = None

    @torch.no_grad()
    def init_keys(self, layer_means: dict[int, torch.Tensor], task_embeddings: torch.Tensor) -> None:
        """k_l = q(t_l): keys start at the query of each language's mean hidden state at that layer.

        ``task_embeddings`` [S, hidden] (mean pooled encoder output per language) are kept for
        reporting how close a target language is to each source.
        """
        for i, means in layer_means.items():
            # Mean hidden states of all languages share one large common direction (cosines ~0.9);
            # only what sets a language apart from the others should decide where attention goes.
            # Unit-direction keys scaled by √d make the logits <q(x), k_l>/√d = |q(x)| cos(q(x), k_l):
            # a few units apart, so the initial attention already prefers the closest sources.
            keys = self.query[str(i)](means - means.mean(0, keepdim=True))
            self.query_centres[self.layers.index(i)].copy_(means.mean(0))
            self.keys[str(i)].copy_(nn.functional.normalize(keys, dim=-1) * math.sqrt(self.dim))
        self.task_embeddings.copy_(task_embeddings)

    def task_similarity(self, embedding: torch.Tensor) -> torch.Tensor:
        """Cosine of a language's task embedding to each source's, both centred on the sources' mean."""
        centre = self.task_embeddings.mean(0, keepdim=True)
        return nn.functional.cosine_similarity(embedding - centre, self.task_embeddings - centre, dim=-1)

    def logits(self, layer: int, x: torch.Tensor, target: str | None) -> torch.Tensor:
        """The mixer's scores [..., S] before masking (``target``: the adapted linear, for Arrow)."""
        if self.mixer == "uniform" or (self.mixer == "nearest" and self.nearness is None):
            return x.new_zeros(*x.shape[:-1], len(self.languages))
        if self.mixer == "nearest":
            return self.nearness.to(x).expand(*x.shape[:-1], -1)
        if self.mixer == "arrow":
            return arrow_logits(x, self.prototypes(target), self.arrow)
        tau = self.log_tau[self.layers.index(layer)].exp()
        # centred queries, like the keys: what every language's hidden states share does not pick a source
        h = x - self.query_centres[self.layers.index(layer)].to(x.dtype) if self.centred_queries else x
        return self.query[str(layer)](h) @ self.keys[str(layer)].T / math.sqrt(self.dim) / tau

    def weights(self, layer: int, x: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """a [..., S] for hidden states x [..., hidden] entering adapted linear ``target`` of ``layer``;
        excluded languages get exactly 0."""
        key = (layer, target) if self.mixer == "arrow" else layer  # Arrow's v_l differ between q, k and v
        if self._last is not None and self._last[0] == key and self._last[1] is x:
            return self._last[2]  # q, k and v projections of one layer share their input
        logits = self.logits(layer, x, target)
        unmasked = logits.softmax(-1) if self.recorded is not None and self._record_unmasked else None
        mask = torch.zeros(len(self.languages), dtype=torch.bool, device=x.device)
        if self.excluded:
            mask[list(self.excluded)] = True
        if self.top_k and self.top_k < len(self.languages) - len(self.excluded):
            kth = logits.masked_fill(mask, float("-inf")).topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        logits = logits.masked_fill(mask, float("-inf"))
        if bool(mask.all()):
            weights = torch.zeros_like(logits)
        else:
            weights = logits.softmax(-1)
        self._last = (key, x, weights)
        if self.recorded is not None:
            kept = weights if unmasked is None else unmasked
            self.recorded.append((layer, kept.detach() if self._detach_recorded else kept))
        return weights

    def excluding(self, languages: list[str]) -> contextlib.AbstractContextManager[None]:
        """Mask these source languages out (an episode's own language)."""
        return attributes_set(self, excluded={self.languages.index(lang) for lang in languages if lang in self.languages})

    @contextlib.contextmanager
    def recording(self, detach: bool = True, unmasked: bool = False) -> Iterator[list[tuple[int, torch.Tensor]]]:
        """Collect (layer, weights) of every forward pass, for `xmeta explain` (``detach=False``: with
        their graph, for the routing loss; ``unmasked``: the softmax over every source, before excluded
        sources and top-k are masked, as self-routing reads it)."""
        with attributes_set(self, recorded=[], _detach_recorded=detach, _record_unmasked=unmasked):
            yield self.recorded


class SourceTransfer(nn.Module):
    """Bank + attention, attached to the peft LoRA linears by forward hooks."""

    def __init__(self, bank: SourceLanguageBank, attention: SourceLanguageAttention, centering: bool = False) -> None:
        super().__init__()
        self.bank = bank
        self.attention = attention
        self.centering = centering  # mix Δ_l − Δ̄ (the bank's mean delta) instead of Δ_l
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.enabled = True
        self._prototypes: dict[str, tuple[int, torch.Tensor]] = {}  # target -> (bank version, Arrow's v_l)
        if attention.mixer == "arrow":
            attention.prototypes = self.arrow_prototypes

    def arrow_prototypes(self, target: str) -> torch.Tensor:
        """Arrow's v_l [S, in] of adapted linear ``target``, recomputed whenever the bank has changed."""
        cached = self._prototypes.get(target)
        if cached is None or cached[0] != self.bank.version:
            cached = self._prototypes[target] = (self.bank.version, arrow_prototypes(*self.bank.tensors(target)))
        return cached[1]

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the plain encoder (e.g. for task embeddings): the bank mix is not added."""
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    def attach(self, modules: dict[str, tuple[int, nn.Module]]) -> None:
        """Hook ``{target name: (layer index, LoRA linear)}`` so each output gains the bank mix."""
        for target, (layer, module) in modules.items():
            self._handles.append(module.register_forward_hook(self._hook(target, layer)))

    def _hook(self, target: str, layer: int):
        def add_bank_mix(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            if not self.enabled:
                return output
            x = args[0]
            self.bank.ensure_loaded()
            a = self.attention.weights(layer, x, target)  # [B, T, S]
            if self.centering:  # Σ_l a_l (Δ_l − Δ̄) = Σ_l (a_l − Σa / S) Δ_l: exact, without forming Δ̄
                a = a - a.sum(-1, keepdim=True) / a.shape[-1]
            bank_a, bank_b = self.bank.tensors(target)
            u = torch.einsum("bti,sri->btsr", x, bank_a) * a.unsqueeze(-1)
            return output + torch.einsum("btsr,sor->bto", u, bank_b) * self.bank.scaling

        return add_bank_mix


def lora_linears(peft_model: nn.Module, prefix: str = "") -> dict[str, tuple[int, nn.Module]]:
    """Every LoRA-wrapped linear of the encoder: ``{module name: (layer index, module)}``."""
    from peft.tuners.lora import LoraLayer

    from ..encoders import layer_index

    found = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            index = layer_index(name)
            if index is not None:
                found[f"{prefix}{name}"] = (index, module)
    return found


def build_source_transfer(peft_model: nn.Module, languages: list[str], hidden: int, rank: int, scaling: float,
                          dim: int, top_k: int, prefix: str = "", centering: bool = False,
                          mixer: str = "attention") -> tuple[SourceTransfer, dict[str, tuple[int, nn.Module]]]:
    """Bank and attention sized for ``peft_model``'s LoRA linears (not yet attached)."""
    linears = lora_linears(peft_model, prefix)
    shapes = {name: (m.in_features, m.out_features) for name, (_, m) in linears.items()}
    layers = sorted({index for index, _ in linears.values()})
    bank = SourceLanguageBank(languages, shapes, rank, scaling)
    attention = SourceLanguageAttention(languages, layers, hidden, dim, top_k, centred_queries=centering, mixer=mixer)
    return SourceTransfer(bank, attention, centering), linears
