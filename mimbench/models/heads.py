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
    """

    def __init__(self, in_dim: int, out_dim: int, init_std: float = 0.02):
        super().__init__()
        self.head = nn.Linear(in_dim, out_dim)
        nn.init.trunc_normal_(self.head.weight, std=init_std)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)
