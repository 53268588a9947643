"""Pixel reconstruction targets: raw patches or patches normalized by their own mean and variance."""
from __future__ import annotations

import torch
from torch import nn

from mimbench.models.patches import patchify
from mimbench.registry import TARGETS


def masked_mean(per_patch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_patch [B, L]`` over the removed positions of ``mask [B, L]`` (True = removed)."""
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum().clamp_min(1)


@TARGETS.register_module()
class PixelTarget(nn.Module):
    """Per-patch pixel values as the reconstruction target, MSE on removed patches only.

    Args:
        patch_size: side of a patch p.
        in_chans: image channels C.
        normalize: subtract each patch's mean and divide by sqrt(var + eps) (MAE's better variant).

    ``channels`` = p*p*C, the width a prediction head must output.
    ``forward(imgs [B, C, H, W])`` -> target ``[B, L, p*p*C]``.
    ``loss(pred [B, L, p*p*C], imgs, mask [B, L])`` -> scalar: mean over removed patches of the per-patch MSE.
    """

    def __init__(self, patch_size: int, in_chans: int = 3, normalize: bool = False, eps: float = 1e-6):
        super().__init__()
        self.patch_size = patch_size
        self.channels = patch_size * patch_size * in_chans
        self.normalize = normalize
        self.eps = eps

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        target = patchify(imgs, self.patch_size)
        if self.normalize:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + self.eps).sqrt()
        return target

    def loss(self, pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = self(imgs)
        per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)   # [B, L]
        return masked_mean(per_patch, mask)
