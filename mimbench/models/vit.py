"""Vision Transformer encoder built from timm blocks, with the three input paths MIM needs."""
from __future__ import annotations

from functools import partial

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from mimbench.masking.indices import gather_tokens
from mimbench.models.init import init_vit_weights
from mimbench.models.patches import sincos_pos_embed_2d
from mimbench.registry import ENCODERS

# name: (embed_dim, depth, num_heads). 'micro' is the CIFAR-scale encoder of the micro protocol (32 px, patch 4).
ARCHS = {
    'micro': (192, 6, 3),
    'tiny': (192, 12, 3),
    'small': (384, 12, 6),
    'base': (768, 12, 12),
    'large': (1024, 24, 16),
    'huge': (1280, 32, 16),
}


@ENCODERS.register_module()
class ViT(nn.Module):
    """ViT encoder: patch embedding + fixed 2-D sin-cos positions + cls token + timm ``Block`` s + LayerNorm.

    Three forward paths, all returning ``[B, 1 + N, D]`` with the cls token first:
      * :meth:`forward_visible` ``(imgs, ids_keep)``: only the patches at ``ids_keep [B, N]`` enter the
        Transformer (MAE/CAE encoder; where the compute saving comes from).
      * :meth:`forward_masked` ``(imgs, mask)``: all L patches, masked ones replaced by a learnable [M]
        embedding before the position embedding is added (BEiT-style; MAE's "encoder w/ [M]" ablation).
        Needs ``use_mask_token=True``.
      * :meth:`forward` ``(imgs)``: all patches, nothing masked (evaluation).

    Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
    ``blocks.i``, ``norm``) so trained weights load into timm directly.

    Args:
        arch: one of :data:`ARCHS`; ``embed_dim``/``depth``/``num_heads`` override its values.
        img_size, patch_size, in_chans: input geometry; the grid is ``img_size // patch_size`` per side.
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
        layer_scale_init: initial value of timm's LayerScale (None: no layer scale).
    """

    def __init__(self, arch: str = 'base', img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int | None = None, depth: int | None = None, num_heads: int | None = None,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0,
                 layer_scale_init: float | None = None, use_mask_token: bool = False):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown ViT arch '{arch}'; choose one of {', '.join(ARCHS)}")
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch_size {patch_size}')
        default_dim, default_depth, default_heads = ARCHS[arch]
        self.embed_dim = embed_dim = embed_dim or default_dim
        depth = depth or default_depth
        num_heads = num_heads or default_heads
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by num_heads {num_heads}')
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_mask_token else None
        self.register_buffer('pos_embed', sincos_pos_embed_2d(embed_dim, self.grid, cls_token=True)[None])
        norm = partial(nn.LayerNorm, eps=1e-6)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear in depth
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, init_values=layer_scale_init,
                  drop_path=dpr[i], norm_layer=norm) for i in range(depth)])
        self.norm = norm(embed_dim)
        init_vit_weights(self)

    def _embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> patch embeddings with positions added, ``[B, L, D]``."""
        return self.patch_embed(imgs) + self.pos_embed[:, 1:]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend cls, run the blocks, normalize: ``[B, N, D]`` -> ``[B, 1 + N, D]``."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return self.norm(self.blocks(torch.cat([cls, x], dim=1)))

    def forward_visible(self, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Encode only the patches at ``ids_keep [B, N]``: returns ``[B, 1 + N, D]``."""
        return self._encode(gather_tokens(self._embed(imgs), ids_keep))

    def forward_masked(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode all patches with [M] where ``mask [B, L]`` is True: returns ``[B, 1 + L, D]``."""
        if self.mask_token is None:
            raise RuntimeError('forward_masked needs an encoder built with use_mask_token=True')
        x = self.patch_embed(imgs)
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return self._encode(x + self.pos_embed[:, 1:])

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Encode every patch (evaluation): ``[B, C, H, W]`` -> ``[B, 1 + L, D]``."""
        return self._encode(self._embed(imgs))
