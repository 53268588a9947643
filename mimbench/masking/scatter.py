"""Put predictions made for a subset of positions back on the full patch sequence."""
from __future__ import annotations

import torch


def scatter_tokens(x: torch.Tensor, ids: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`~mimbench.masking.gather_tokens`: ``x [B, K, C]`` placed at ``ids [B, K]`` of a zero
    sequence ``[B, length, C]``.

    Algorithms that predict only the removed patches (CAE, BEiT-style) use it to hand a target the ``[B, L, C]``
    prediction its ``loss(pred, imgs, mask)`` expects; the zeros at visible positions are never read, because
    every target's loss averages over removed patches only.
    """
    out = x.new_zeros(x.shape[0], length, x.shape[-1])
    return out.scatter(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)
