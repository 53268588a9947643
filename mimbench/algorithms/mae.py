"""MAE: encode the visible patches, decode them together with mask tokens, regress the removed patches."""
from __future__ import annotations

import torch

from mimbench.algorithms.base import BaseAlgorithm
from mimbench.masking.indices import split_indices
from mimbench.registry import ENCODERS, HEADS, MASKERS, MODELS, TARGETS


@MODELS.register_module()
class MAE(BaseAlgorithm):
    """Masked autoencoder (He et al. 2022) assembled from registered parts.

    Args:
        encoder: ViT config; its grid and width size the other parts.
        decoder: decoder config (``MAEDecoder``); grid, input and output widths are filled in.
        masker: masker config; the grid is filled in.
        target: target config (``PixelTarget``...); the patch size is filled in.
        mask_token_in_encoder: the "encoder w/ [M]" ablation: the encoder sees all patches with [M] at
            removed positions, and the decoder inserts nothing.
        data_preprocessor: see :class:`~mimbench.algorithms.preprocessor.ImagePreprocessor`.
    """

    def __init__(self, encoder: dict, decoder: dict, masker: dict, target: dict,
                 mask_token_in_encoder: bool = False, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(data_preprocessor, init_cfg)
        self.encoder = ENCODERS.build(encoder, default_args=dict(use_mask_token=mask_token_in_encoder))
        self.masker = MASKERS.build(masker, default_args=dict(grid=self.encoder.grid))
        self.target = TARGETS.build(target, default_args=dict(patch_size=self.encoder.patch_size,
                                                              in_chans=self.encoder.in_chans))
        self.decoder = HEADS.build(decoder, default_args=dict(
            grid=self.encoder.grid, in_dim=self.encoder.embed_dim, out_dim=self.target.channels))
        self.mask_token_in_encoder = mask_token_in_encoder

    def reconstruct(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predict the target for every patch: imgs ``[B, C, H, W]``, mask ``[B, L]`` -> ``[B, L, C_t]``."""
        if self.mask_token_in_encoder:
            latent = self.encoder.forward_masked(imgs, mask)              # [B, 1 + L, D]
            return self.decoder(latent, None)
        ids = split_indices(mask)
        latent = self.encoder.forward_visible(imgs, ids.ids_keep)        # [B, 1 + Lv, D]
        return self.decoder(latent, ids.ids_restore)                     # [B, L, C_t]

    def loss(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = self.masker(imgs.shape[0], device=imgs.device)            # [B, L], True = removed
        pred = self.reconstruct(imgs, mask)
        return {'loss': self.target.loss(pred, imgs, mask)}
