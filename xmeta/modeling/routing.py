"""Routing that routes (issue #14): tie source attention to which sources typology says are close.

Left alone, the attention learns a global preference (the same few sources for every target). The
auxiliary loss of an episode of source l is KL(p_l ‖ ā): ā is the attention averaged over the real
tokens and adapted layers of the episode's query pass, p_l the URIEL routing prior of l over the other
sources (`xmeta.data.typology.routing_prior`), stored as the attention's ``routing_prior`` buffer
(row l; zeros where URIEL lacks l, which then gets no loss), so a loaded model never needs URIEL.
Leave-one-language-out makes l stand for a target the attention has not seen, as in meta-training.

That lesson is "where to go when your own language is missing", so no episode teaches Indonesian-like
tokens to go to Indonesian, which is what Malay needs. With *self-routing* (``routing_self``) the loss reads
the attention before l's slot is masked (the same logits, softmax over every source) and p_l includes l
itself (mostly l, then its relatives): the attention learns which source a language's tokens resemble, and
a new language goes to the sources it resembles. The forward pass still mixes with l masked out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..data.typology import routing_prior
from .source_attention import SourceLanguageAttention


def routing_prior_matrix(languages: list[str], temperature: float, include_self: bool = False) -> torch.Tensor:
    """[S, S]: row l = the URIEL routing prior of source l over the other sources (0 on the diagonal; with
    ``include_self``, over every source, l itself included); a row of zeros where URIEL lacks l (no prior for it)."""
    matrix = torch.zeros(len(languages), len(languages))
    for i, lang in enumerate(languages):
        columns = [j for j in range(len(languages)) if include_self or j != i]
        prior = routing_prior(lang, [languages[j] for j in columns], temperature) if columns else None
        if prior is not None:
            matrix[i, columns] = torch.as_tensor(prior, dtype=torch.float32)
    return matrix


def routing_loss(prior: torch.Tensor, weights: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
    """KL(prior ‖ ā): ā = the attention ``weights`` [B, T, S] averaged over the real tokens (``masks``
    [B, T] of each, None: every token); sources the prior gives 0 (the episode's own) add nothing."""
    total, tokens = 0.0, 0.0
    for w, mask in zip(weights, masks):
        real = torch.ones(w.shape[:-1], device=w.device) if mask is None else mask.to(w.device).float()
        total = total + (w.float() * real.unsqueeze(-1)).sum((0, 1))
        tokens = tokens + real.sum()
    mean = total / tokens
    used = prior > 0
    return (prior[used] * (prior[used].log() - mean[used].clamp_min(1e-12).log())).sum()


@contextlib.contextmanager
def recording_with_masks(attention: SourceLanguageAttention, network: nn.Module,
                         unmasked: bool = False) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor | None]]]:
    """Collect the attention weights of every pass of ``network`` in the block, with their graph (``unmasked``:
    before excluded sources are masked), and each one's attention mask (read from the network's
    ``attention_mask`` argument); both lists fill on exit."""
    weights: list[torch.Tensor] = []
    masks: list[torch.Tensor | None] = []
    starts: list[tuple[int, torch.Tensor | None]] = []  # (index of a pass's first weights, its attention mask)
    with attention.recording(detach=False, unmasked=unmasked) as recorded:
        handle = network.register_forward_pre_hook(
            lambda _module, _args, kwargs: starts.append((len(recorded), kwargs.get("attention_mask"))),
            with_kwargs=True)
        try:
            yield weights, masks
        finally:
            handle.remove()
        weights += [w for _, w in recorded]
    ends = [start for start, _ in starts[1:]] + [len(weights)]
    masks += [mask for (start, mask), end in zip(starts, ends) for _ in range(start, end)]
