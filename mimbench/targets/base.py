"""What every reconstruction target shares: the loss over the removed patches, for a model that predicts every
patch (MAE) or only the removed ones (CAE, BEiT-style)."""
from __future__ import annotations

import torch
from torch import nn

from mimbench.masking.indices import gather_tokens


def masked_mean(per_patch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_patch [B, L]`` over the removed positions of ``mask [B, L]`` (True = removed)."""
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum().clamp_min(1)


class Target(nn.Module):
    """A reconstruction target. A subclass sets ``channels`` (values a head predicts per patch) and defines
    ``forward(imgs [B, C, H, W])`` -> the target of every patch, ``[B, L, C]`` (or ``[B, L]`` code ids), and
    ``per_patch_loss(pred [B, N, C], target [B, N(, C)])`` -> ``[B, N]``; one that can map predictions back to
    pixels defines ``inverse(pred, imgs)`` -> patches ``[B, N, p*p*C]`` of the (normalized) image."""

    channels: int

    def per_patch_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor,
             ids_masked: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss over the removed patches. ``pred [B, L, C]`` has a prediction for every patch and is scored
        where ``mask [B, L]`` is True; with ``ids_masked [B, Lm]``, ``pred [B, Lm, C]`` holds predictions for
        exactly those patches, in that order (a model that predicts only the removed patches passes them as
        they come, with no padding to ``L``)."""
        if pred.shape[-1] != self.channels:
            raise ValueError(f'the prediction has {pred.shape[-1]} values per patch; {type(self).__name__} needs '
                             f'{self.channels}')
        target = self(imgs)
        if ids_masked is None:
            return masked_mean(self.per_patch_loss(pred, target), mask)
        picked = (gather_tokens(target, ids_masked) if target.dim() == 3
                  else torch.gather(target, 1, ids_masked))                   # [B, Lm(, C)]
        return self.per_patch_loss(pred, picked).mean()
