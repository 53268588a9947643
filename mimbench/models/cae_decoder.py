"""CAE's decoder: self-attention over the predicted latents of the removed patches, then a per-patch head."""
from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from mimbench.masking.indices import gather_tokens
from mimbench.models.init import init_vit_weights
from mimbench.models.patches import sincos_pos_embed_2d
from mimbench.registry import HEADS


@HEADS.register_module()
class CAEDecoder(nn.Module):
    """Map predicted latents of removed patches to the target: ``depth`` timm ``Block`` s over those latents
    only (plus their position embeddings), a LayerNorm and a linear head.

    The decoder never sees the visible patches, so it cannot reconstruct from context on its own: everything it
    knows comes through the regressor's latents (CAE's separation of representation and pretext task). It keeps
    the encoder's width, so the encoder's own output can be fed to it directly (``tools/cae_alignment.py``).

    Args:
        grid: patch grid (H, W) of the encoder.
        in_dim: width D of the latents (the encoder's).
        out_dim: values predicted per patch: the target's ``channels`` (p*p*C pixels, or the vocabulary size
            for tokens, whose logits go to cross-entropy).
        depth, num_heads, mlp_ratio, layer_scale_init: the blocks.
        drop_path_rate: stochastic depth, linearly increasing over the blocks from 0 (the authors: 0.1, the
            encoder's rate).

    ``forward(latent [B, N, D], ids [B, N]) -> [B, N, out_dim]``: ``ids`` are the image positions of the N
    latents (``ids_masked`` in training; all positions when decoding a whole image).
    """

    def __init__(self, grid: tuple[int, int], in_dim: int, out_dim: int, depth: int = 4, num_heads: int = 12,
                 mlp_ratio: float = 4.0, layer_scale_init: float | None = None, drop_path_rate: float = 0.0):
        super().__init__()
        if depth < 0:
            raise ValueError(f'decoder depth must be >= 0, got {depth}')
        if in_dim % num_heads:
            raise ValueError(f'decoder width {in_dim} (the encoder embed_dim) is not divisible by num_heads '
                             f'{num_heads}')
        self.grid = tuple(grid)
        self.register_buffer('pos_embed', sincos_pos_embed_2d(in_dim, self.grid)[None])
        norm = partial(nn.LayerNorm, eps=1e-6)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[Block(in_dim, num_heads, mlp_ratio, qkv_bias=True, init_values=layer_scale_init,
                                            drop_path=dpr[i], norm_layer=norm) for i in range(depth)])
        self.norm = norm(in_dim)
        self.head = nn.Linear(in_dim, out_dim)
        init_vit_weights(self)

    def forward(self, latent: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        pos = gather_tokens(self.pos_embed.expand(latent.shape[0], -1, -1), ids).to(latent.dtype)
        return self.head(self.norm(self.blocks(latent + pos)))
