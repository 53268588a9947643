"""What an MAE-style model makes of masked images, as pictures: original | masked | reconstruction | pasted."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mimbench.models.patches import patchify, unpatchify
from mimbench.targets import PixelTarget

# Removed patches are drawn in this grey (on the [0, 1] scale) in the "masked" panel.
MASK_GREY = 0.5

NORM_PIX_NOTE = ('The model predicts each patch normalized by its own mean and variance; to draw it, every '
                 'predicted patch was un-normalized with the ground-truth mean and variance of that patch. This '
                 'leaks the true patch brightness and contrast into the picture: judge structure, not colour.')
RAW_PIX_NOTE = 'The model predicts raw (normalized-image) pixels; they are drawn as predicted.'


@dataclass
class Reconstruction:
    """Four ``[B, 3, H, W]`` images in [0, 1], the ``mask [B, L]`` (True = removed) and a figure caption.

    ``reconstruction`` is the prediction for every patch, visible ones included (the loss ignores those, so
    they look poor); ``pasted`` keeps the prediction only where patches were removed.
    """

    original: torch.Tensor
    masked: torch.Tensor
    reconstruction: torch.Tensor
    pasted: torch.Tensor
    mask: torch.Tensor
    caption: str


def predicted_pixels(target: PixelTarget, pred: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
    """Turn target-space predictions ``[B, L, p*p*C]`` into pixel patches of the (normalized) image ``imgs``.

    For a norm-pixel target the prediction is ``(patch - mean) / sqrt(var + eps)``; it is mapped back with the
    mean and variance of the *ground-truth* patch, the only statistics there are.
    """
    if not target.normalize:
        return pred
    patches = patchify(imgs, target.patch_size)
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return pred * (var + target.eps).sqrt() + mean


@torch.no_grad()
def reconstruct(model, imgs: torch.Tensor, generator: torch.Generator | None = None) -> Reconstruction:
    """Mask ``imgs`` (uint8 ``[B, 3, H, W]``) with ``model``'s masker and draw its reconstructions.

    ``model`` is a pretraining algorithm with ``data_preprocessor``, ``masker``, ``target`` (a
    :class:`PixelTarget`), ``encoder`` and ``reconstruct(imgs, mask) -> [B, L, C_t]`` (MAE).
    """
    if not isinstance(model.target, PixelTarget):
        raise ValueError(f'pictures need a pixel target; this model predicts {type(model.target).__name__}')
    model.eval()
    pre = model.data_preprocessor
    x = pre.normalize(imgs)
    mask = model.masker(x.shape[0], generator=generator)                      # [B, L]
    pred = predicted_pixels(model.target, model.reconstruct(x, mask).float(), x)
    p, grid, chans = model.encoder.patch_size, model.encoder.grid, x.shape[1]
    patches = patchify(x, p)
    pasted = torch.where(mask.unsqueeze(-1), pred, patches)
    original = pre.denormalize(x)
    masked = patchify(original, p).masked_fill(mask.unsqueeze(-1), MASK_GREY)
    caption = (f'original | masked ({mask.float().mean().item():.0%} of patches removed, grey) | reconstruction '
               f'of every patch | reconstruction with the visible patches pasted back. '
               + (NORM_PIX_NOTE if model.target.normalize else RAW_PIX_NOTE))
    return Reconstruction(original=original,
                          masked=unpatchify(masked, p, grid, chans),
                          reconstruction=pre.denormalize(unpatchify(pred, p, grid, chans)),
                          pasted=pre.denormalize(unpatchify(pasted, p, grid, chans)),
                          mask=mask, caption=caption)
