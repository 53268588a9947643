"""The MAE decoder: a small Transformer that fills in mask tokens and predicts the target per patch."""
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
class MAEDecoder(nn.Module):
    """Project encoder tokens to the decoder width, insert one shared mask token per removed patch, run
    ``depth`` Transformer blocks over the full sequence, and predict ``out_dim`` values per patch.

    Args:
        grid: patch grid (H, W) of the encoder.
        in_dim: encoder width D.
        out_dim: values predicted per patch (the target's channels, e.g. p*p*3 for pixels).
        embed_dim, depth, num_heads: decoder width, number of blocks, heads.

    ``forward(latent, ids_restore)``:
        latent: ``[B, 1 + Lv, D]`` encoder output for the visible patches (cls first), laid out in the
            ``ids_keep`` order; or ``[B, 1 + L, D]`` from an encoder that already saw [M] (pass
            ``ids_restore=None``: nothing is inserted).
        ids_restore: ``[B, L]`` from :func:`mimbench.masking.split_indices`.
        Returns ``[B, L, out_dim]`` predictions in image order (cls dropped).
    """

    def __init__(self, grid: tuple[int, int], in_dim: int, out_dim: int, embed_dim: int = 512, depth: int = 8,
                 num_heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'decoder embed_dim {embed_dim} is not divisible by num_heads {num_heads}')
        if depth < 0:
            raise ValueError(f'decoder depth must be >= 0, got {depth}')
        self.grid = tuple(grid)
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer('pos_embed', sincos_pos_embed_2d(embed_dim, self.grid, cls_token=True)[None])
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                      for _ in range(depth)])
        self.norm = norm(embed_dim)
        self.head = nn.Linear(embed_dim, out_dim)
        init_vit_weights(self)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor | None) -> torch.Tensor:
        x = self.embed(latent)                                    # [B, 1 + N, E]
        cls, tokens = x[:, :1], x[:, 1:]
        if ids_restore is not None:
            num_masked = ids_restore.shape[1] - tokens.shape[1]
            masked = self.mask_token.to(x.dtype).expand(x.shape[0], num_masked, -1)
            tokens = gather_tokens(torch.cat([tokens, masked], dim=1), ids_restore)   # [B, L, E], image order
        x = torch.cat([cls, tokens], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 1:])                                 # [B, L, out_dim]
