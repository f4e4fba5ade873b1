"""Arrow routing over the source bank (Ostapenko et al., 2024), a training-free mixer to compare the learned
source attention with (issue #14).

Each source adapter Δ_l = B_l A_l is summarised by its top right singular vector v_l (the input direction it
changes most); a token x draws on the ``top_k`` sources with the largest |⟨x, v_l⟩| (the sign of a singular
vector is arbitrary), weighted by a softmax of those scores over ``router_temperature``. The settings are
peft's `ArrowConfig`; peft finds v_l by power iteration from a random start, here it is exact (a reduced QR of
B_l, then the SVD of the small R_l A_l), so routing is deterministic. An empty slot has no direction: zero.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.config import ArrowConfig

ARROW_TOP_K = ArrowConfig.top_k  # peft's default: 3 sources per token


def arrow_config(top_k: int) -> ArrowConfig:
    """peft's Arrow settings for a bank mix keeping ``top_k`` sources per token (0: peft's default)."""
    return ArrowConfig(top_k=top_k or ARROW_TOP_K)


@torch.inference_mode(False)  # first used under inference mode (predict), they are cached for training too
@torch.no_grad()
def arrow_prototypes(bank_a: torch.Tensor, bank_b: torch.Tensor) -> torch.Tensor:
    """v_l [S, in]: the top right singular vector of each slot's B_l A_l (A [S, r, in], B [S, out, r]);
    zero for an empty slot. B_l = Q_l R_l, so B_l A_l = Q_l (R_l A_l) shares R_l A_l's right singular vectors."""
    r = torch.linalg.qr(bank_b.float()).R  # [S, r, r]
    _, _, vh = torch.linalg.svd(r @ bank_a.float(), full_matrices=False)
    filled = (bank_b.flatten(1).abs().sum(1) > 0) & (bank_a.flatten(1).abs().sum(1) > 0)
    return vh[:, 0, :] * filled.unsqueeze(1).to(vh.dtype)


def arrow_logits(x: torch.Tensor, prototypes: torch.Tensor, config: ArrowConfig) -> torch.Tensor:
    """|⟨x, v_l⟩| / router_temperature [..., S] for hidden states x [..., in]."""
    return (x @ prototypes.to(x.dtype).T).abs() / config.router_temperature
