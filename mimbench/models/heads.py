"""Prediction heads that read the encoder's output directly (BEiT-style pretraining)."""
from __future__ import annotations

import torch
from torch import nn

from mimbench.registry import HEADS


@HEADS.register_module()
class LinearHead(nn.Module):
    """One linear layer per patch: ``[B, N, in_dim] -> [B, N, out_dim]``.

    BEiT predicts the target of each masked patch from the encoder's (already LayerNorm-ed) output with a single
    linear map; ``out_dim`` is the target's ``channels`` (the vocabulary for tokens, p*p*C for pixels).

    Args:
        in_dim: encoder width D; out_dim: values per patch.
        init_std: std of the truncated-normal weight init (BEiT's 0.02; small logits at the start keep the first
            cross-entropy near log(vocabulary)).
        init_cutoff: the normal is cut at ±``init_cutoff`` (absolute). torch's default 2.0 leaves a std of 0.02
            uncut; BEiT cuts at one std (0.02), which leaves an actual std of 0.54 ``init_std``.
    """

    def __init__(self, in_dim: int, out_dim: int, init_std: float = 0.02, init_cutoff: float = 2.0):
        super().__init__()
        if init_cutoff <= 0:
            raise ValueError(f'LinearHead init_cutoff must be positive (a bound ±init_cutoff), got {init_cutoff}')
        self.head = nn.Linear(in_dim, out_dim)
        nn.init.trunc_normal_(self.head.weight, std=init_std, a=-init_cutoff, b=init_cutoff)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
