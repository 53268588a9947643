"""Pixel reconstruction targets: raw patches or patches normalized by their own mean and variance."""
from __future__ import annotations

import torch

from mimbench.models.patches import patchify
from mimbench.registry import TARGETS
from mimbench.targets.base import Target


@TARGETS.register_module()
class PixelTarget(Target):
    """Per-patch pixel values as the reconstruction target, MSE on removed patches only.

    Args:
        patch_size: side of a patch p.
        in_chans: image channels C.
        normalize: subtract each patch's mean and divide by sqrt(var + eps) (MAE's better variant).

    ``channels`` = p*p*C, the width a prediction head must output.
    ``forward(imgs [B, C, H, W])`` -> target ``[B, L, p*p*C]``.
    ``loss(pred, imgs, mask[, ids_masked])`` -> scalar: mean over removed patches of the per-patch MSE
    (see :meth:`Target.loss`). ``inverse(pred, imgs)`` -> pixel patches: a normalized prediction is mapped
    back with the mean and variance of the ground-truth patch, the only statistics there are.
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

    def per_patch_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.float() - target.float()).pow(2).mean(dim=-1)

    def inverse(self, pred: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
        """Predictions ``[B, L, p*p*C]`` -> pixel patches of the (normalized) image ``imgs``."""
        if not self.normalize:
            return pred
        patches = patchify(imgs, self.patch_size)
        mean = patches.mean(dim=-1, keepdim=True)
        var = patches.var(dim=-1, keepdim=True)
        return pred * (var + self.eps).sqrt() + mean
