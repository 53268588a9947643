"""What a model (MAE, CAE, BEiT-style) whose target maps back to pixels (pixels, PCA coefficients) makes of
masked images, as pictures: original | masked | reconstruction | pasted. The target owns that map
(``target.inverse``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mimbench.errors import MimbenchError
from mimbench.models.patches import patchify, unpatchify
from mimbench.targets import PCATarget, PixelTarget

# Removed patches are drawn in this grey (on the [0, 1] scale) in the "masked" panel.
MASK_GREY = 0.5

NORM_PIX_NOTE = ('The model predicts each patch normalized by its own mean and variance; to draw it, every '
                 'predicted patch was un-normalized with the ground-truth mean and variance of that patch. This '
                 'leaks the true patch brightness and contrast into the picture: judge structure, not colour.')
RAW_PIX_NOTE = 'The model predicts raw (normalized-image) pixels; they are drawn as predicted.'
PCA_NOTE = ('The model predicts coefficients on the leading principal components of patches; they are drawn '
            'through that basis, so fine detail beyond the kept components cannot appear.')
REMOVED_ONLY_NOTE = ('{name} predicts the removed patches only: the visible ones are grey in the reconstruction '
                     'panel too.')
SUPPORTED = ('MAE, CAE and BEiT-style models with a PixelTarget or a PCATarget (e.g. '
             'configs/mae_micro_cifar10.py, configs/cae_pixel_micro_cifar10.py, configs/mae_pca_micro_cifar10.py)')


class ReconstructionUnsupported(MimbenchError):
    """The model does not predict pixels, so there is no reconstruction picture to draw."""


def check_drawable(model) -> None:
    """Raise :class:`ReconstructionUnsupported`, saying why and what is supported, unless ``model`` predicts
    pixels through a ``reconstruct(imgs, mask)`` method."""
    name, target = type(model).__name__, type(getattr(model, 'target', None)).__name__
    if not callable(getattr(getattr(model, 'target', None), 'inverse', None)):
        what = 'tokenizer code ids' if target == 'TokenTarget' else f'{target} values'
        raise ReconstructionUnsupported(f'no reconstruction picture for {name} with a {target}: it predicts {what}, '
                                        f'not pixels; pictures are drawn for {SUPPORTED}')
    if not callable(getattr(model, 'reconstruct', None)):
        raise ReconstructionUnsupported(f'no reconstruction picture for {name}: it has no reconstruct(imgs, mask); '
                                        f'pictures are drawn for {SUPPORTED}')


@dataclass
class Reconstruction:
    """Four ``[B, 3, H, W]`` images in [0, 1], the ``mask [B, L]`` (True = removed) and a figure caption.

    ``reconstruction`` is the prediction for every patch, visible ones included (the loss ignores those, so
    they look poor; a model that predicts removed patches only, CAE or BEiT, leaves them grey); ``pasted`` keeps the
    prediction only where patches were removed.
    """

    original: torch.Tensor
    masked: torch.Tensor
    reconstruction: torch.Tensor
    pasted: torch.Tensor
    mask: torch.Tensor
    caption: str


@torch.no_grad()
def reconstruct(model, imgs: torch.Tensor, generator: torch.Generator | None = None) -> Reconstruction:
    """Mask ``imgs`` (uint8 ``[B, 3, H, W]``) with ``model``'s masker and draw its reconstructions.

    ``model`` is a pretraining algorithm with ``data_preprocessor``, ``masker``, ``target`` (one with
    ``inverse``: :class:`PixelTarget`, :class:`PCATarget`), ``encoder`` and
    ``reconstruct(imgs, mask) -> [B, L, C_t]`` (MAE, CAE, BEiT); one whose
    ``reconstructs_visible`` is False predicts only the removed patches. Anything else raises
    :class:`ReconstructionUnsupported`.
    """
    check_drawable(model)
    model.eval()
    pre = model.data_preprocessor
    x = pre.normalize(imgs)
    mask = model.masker(x.shape[0], generator=generator)                      # [B, L]
    pred = model.target.inverse(model.reconstruct(x, mask).float(), x)          # [B, L, p*p*C] pixels
    p, grid, chans = model.encoder.patch_size, model.encoder.grid, x.shape[1]
    patches = patchify(x, p)
    pasted = torch.where(mask.unsqueeze(-1), pred, patches)
    original = pre.denormalize(x)
    masked = patchify(original, p).masked_fill(mask.unsqueeze(-1), MASK_GREY)
    recon = pre.denormalize(unpatchify(pred, p, grid, chans))
    every_patch = getattr(model, 'reconstructs_visible', True)
    if not every_patch:     # nothing was predicted there: grey, not the decoded zeros
        recon = unpatchify(patchify(recon, p).masked_fill(~mask.unsqueeze(-1), MASK_GREY), p, grid, chans)
    caption = (f'original | masked ({mask.float().mean().item():.0%} of patches removed, grey) | reconstruction '
               f'of {"every" if every_patch else "each removed"} patch | reconstruction with the visible patches '
               f'pasted back. ' + _target_note(model.target)
               + ('' if every_patch else ' ' + REMOVED_ONLY_NOTE.format(name=type(model).__name__)))
    return Reconstruction(original=original,
                          masked=unpatchify(masked, p, grid, chans),
                          reconstruction=recon,
                          pasted=pre.denormalize(unpatchify(pasted, p, grid, chans)),
                          mask=mask, caption=caption)


def _target_note(target) -> str:
    if isinstance(target, PCATarget):
        return PCA_NOTE
    return NORM_PIX_NOTE if isinstance(target, PixelTarget) and target.normalize else RAW_PIX_NOTE
