"""Vision Transformer encoder: timm's ``VisionTransformer`` with the two extra input paths MIM needs."""
from __future__ import annotations

from functools import partial

import torch
from timm.layers import DropPath
from timm.models import checkpoint_seq
from timm.models.vision_transformer import VisionTransformer
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
class ViT(VisionTransformer):
    """ViT encoder: a timm ``VisionTransformer`` (no head) with fixed 2-D sin-cos positions and MAE's init.

    Being timm's class, it has timm's parameter names (``patch_embed.proj``, ``cls_token``,
    ``pos_embed [1, 1 + L, D]``, ``blocks.i``, ``norm``), ``group_matcher`` (layer-wise lr decay through
    ``timm.optim.param_groups_layer_decay``), ``set_grad_checkpointing``, ``forward_features`` and
    ``forward_intermediates``, and its weights load into ``timm.create_model(name, **encoder.timm_kwargs)``.

    Three forward paths, all returning ``[B, 1 + N, D]`` with the cls token first:
      * :meth:`forward_visible` ``(imgs, ids_keep)``: only the patches at ``ids_keep [B, N]`` enter the
        Transformer (MAE/CAE encoder; where the compute saving comes from).
      * :meth:`forward_masked` ``(imgs, mask)``: all L patches, masked ones replaced by a learnable [M]
        embedding before the position embedding is added (BEiT-style; MAE's "encoder w/ [M]" ablation).
        Needs ``use_mask_token=True``.
      * :meth:`forward` ``(imgs)``: all patches, nothing masked (evaluation). Unlike timm's ``forward`` it
        returns the tokens (timm's ``forward_features``), not a pooled head output: pooling is the probe's.

    The positions are a buffer, not a parameter (fixed, as in MAE); its [cls] row is zero.

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
        if arch not in ARCHS:
            raise ValueError(f"unknown ViT arch '{arch}'; choose one of {', '.join(ARCHS)}")
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch_size {patch_size}')
        default_dim, default_depth, default_heads = ARCHS[arch]
        embed_dim, depth, num_heads = embed_dim or default_dim, depth or default_depth, num_heads or default_heads
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by num_heads {num_heads}')
        timm_kwargs = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                           depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                           init_values=layer_scale_init)
        # No head, [cls] pooling for timm's forward_head; positions are ours (below); timm's init is skipped
        # for MAE's (init_vit_weights), which draws from the same random stream as before this class was timm's.
        super().__init__(**timm_kwargs, num_classes=0, global_pool='token', drop_path_rate=drop_path_rate,
                         pos_embed='none', norm_layer=partial(nn.LayerNorm, eps=1e-6), weight_init='skip')
        # The architecture as timm.create_model takes it (training choices such as drop path left out).
        self.timm_kwargs = dict(timm_kwargs, num_classes=0, global_pool='token')
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]

        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_mask_token else None
        del self.pos_embed      # timm's attribute is None with pos_embed='none'; ours is a fixed buffer
        self.register_buffer('pos_embed', sincos_pos_embed_2d(embed_dim, self.grid, cls_token=True)[None])
        # Stochastic depth rates as Python floats (timm rounds them through a float32 linspace): the drop
        # decisions of every stored run stay the same.
        for i, block in enumerate(self.blocks):
            for drop in (block.drop_path1, block.drop_path2):
                if isinstance(drop, DropPath):
                    drop.drop_prob = drop_path_rate * i / max(depth - 1, 1)
        init_vit_weights(self)
        # Initialized here, once: mmengine's runner calls init_weights() on every submodule that has one
        # unless it says is_init, and a second draw would give other weights than every stored run had.
        self.is_init = True

    def init_weights(self, mode: str = '', needs_reset: bool = True) -> None:
        """Draw the weights again with MAE's initialization (timm's modes do not apply: the positions are a
        fixed code, and every algorithm here starts from MAE's init)."""
        init_vit_weights(self)
        self.pos_embed.copy_(sincos_pos_embed_2d(self.embed_dim, self.grid, cls_token=True)[None])

    def set_input_size(self, *args, **kwargs):
        raise NotImplementedError('the positions are a fixed sin-cos code for the grid the ViT was built with: '
                                  'build a new ViT with the new img_size (its weights load, positions aside)')

    def _embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> patch embeddings with positions added, ``[B, L, D]``."""
        return self.patch_embed(imgs) + self.pos_embed[:, 1:]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend cls, run the blocks, normalize: ``[B, N, D]`` -> ``[B, 1 + N, D]``."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self.norm(checkpoint_seq(self.blocks, x))
        return self.norm(self.blocks(x))

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

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {'mask_token'}
