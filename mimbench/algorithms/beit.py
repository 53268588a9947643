"""BEiT-style: encode every patch with [M] in place of the removed ones, predict their target linearly."""
from __future__ import annotations

import torch

from mimbench.algorithms.base import BaseAlgorithm
from mimbench.masking.indices import gather_tokens, split_indices
from mimbench.masking.scatter import scatter_tokens
from mimbench.registry import ENCODERS, HEADS, MASKERS, MODELS, TARGETS


@MODELS.register_module()
class BEiT(BaseAlgorithm):
    """BEiT v1-style masked image modeling (Bao et al. 2022) assembled from registered parts.

    Differences from BEiT v1 itself unless the config asks for BEiT's (as ``configs/beit_vitb.py`` does): fixed
    2-D sin-cos positions instead of its shared relative position bias (``rel_pos_bias=True``), and MAE's
    initialization (Xavier-uniform linears, ``mimbench.models.init``), the default of every algorithm so that the
    methods differ only in what the comparison is about, where BEiT draws normals of std 0.02 cut at one std and
    divides each block's output projections by sqrt(2 * layer) (``weight_init='beit'`` on the encoder,
    ``init_cutoff=0.02`` on the head). Always: our own tokenizer (``TokenTarget``) instead of DALL-E's.

    Args:
        encoder: ViT config; ``use_mask_token`` is switched on here.
        head: head config (``LinearHead``); input and output widths are filled in.
        masker: masker config (default block-wise, 40%); the grid is filled in.
        target: target config (``TokenTarget`` in BEiT; ``PixelTarget`` or ``PCATarget`` work too).
    """

    # The head reads the removed patches only: pictures (pixel targets) grey out the visible ones.
    reconstructs_visible = False

    def __init__(self, encoder: dict, target: dict, head: dict | None = None, masker: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor, init_cfg)
        self.encoder = ENCODERS.build(encoder, default_args=dict(use_mask_token=True))
        if self.encoder.mask_token is None:
            raise ValueError('BEiT needs encoder.use_mask_token=True (leave it out of the encoder config)')
        self.masker = MASKERS.build(masker or dict(type='BlockMasker', ratio=0.4),
                                    default_args=dict(grid=self.encoder.grid))
        self.target = TARGETS.build(target, default_args=dict(patch_size=self.encoder.patch_size,
                                                              in_chans=self.encoder.in_chans))
        self.head = HEADS.build(head or dict(type='LinearHead'), default_args=dict(
            in_dim=self.encoder.embed_dim, out_dim=self.target.channels))
        out_dim = self.head.head.out_features
        if out_dim != self.target.channels:
            raise ValueError(f'head out_dim={out_dim} does not match the target, which needs '
                             f'{self.target.channels} (e.g. the tokenizer vocabulary); leave out_dim out of the '
                             f'head config')

    def predict_masked(self, imgs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target predicted at the removed patches: imgs ``[B, C, H, W]``, mask ``[B, L]`` ->
        (``[B, Lm, C_t]``, their positions ``ids_masked [B, Lm]``)."""
        latent = self.encoder.forward_masked(imgs, mask)[:, 1:]                  # [B, L, D], [M] where masked
        ids_masked = split_indices(mask).ids_masked                              # [B, Lm]
        return self.head(gather_tokens(latent, ids_masked)), ids_masked          # [B, Lm, C_t]

    @torch.no_grad()
    def reconstruct(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`predict_masked` laid out by patch for pictures: ``[B, L, C_t]``, 0 where visible."""
        pred, ids_masked = self.predict_masked(imgs, mask)
        return scatter_tokens(pred, ids_masked, mask.shape[1])

    def loss(self, imgs: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if mask is None:
            mask = self.masker(imgs.shape[0], device=imgs.device)                 # [B, L], True = removed
        pred, ids_masked = self.predict_masked(imgs, mask)
        return {'loss': self.target.loss(pred, imgs, mask, ids_masked)}
