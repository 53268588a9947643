"""CAE's latent contextual regressor: masked queries attend to the visible latents, with no self-attention."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from mimbench.masking.indices import gather_tokens
from mimbench.models.init import init_vit_weights
from mimbench.models.patches import sincos_pos_embed_2d
from mimbench.registry import HEADS


class CrossAttention(nn.Module):
    """Multi-head attention whose queries and keys/values come from different sequences.

    ``forward(q [B, Nq, D], k [B, Nk, D], v [B, Nk, D]) -> [B, Nq, D]``. timm's ``Attention`` projects one
    sequence into q, k and v with a single linear, so it cannot take two; this keeps its layout otherwise
    (fused scaled-dot-product attention, output projection).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'regressor embed_dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        return x.view(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)   # [B, h, N, D/h]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._heads(self.q(q)), self._heads(self.k(k)), self._heads(self.v(v)))
        return self.proj(out.transpose(1, 2).flatten(2))


class CrossAttentionBlock(nn.Module):
    """Cross-attention then MLP, residual, with optional layer scale and drop path; the CAE authors' layout.

    Queries, keys and values have their own LayerNorm (they are different sequences with different statistics).
    Position embeddings join the queries and keys only, before their norms: positions decide who attends to
    whom, the values carry content. Unlike a pre-norm ViT block, the residual stream itself is normalized
    after the attention (``x = norm2(x + attn)``) and the MLP reads and adds to that normalized stream, as in
    the CAE code, so each block restarts the stream from a normalized state instead of letting it grow over
    the depth.

    ``forward(x [B, Nq, D], pos_q [B, Nq, D], kv [B, Nk, D], pos_k [B, Nk, D]) -> [B, Nq, D]``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 layer_scale_init: float | None = None, drop_path: float = 0.0):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm_q, self.norm_k, self.norm_v = norm(dim), norm(dim), norm(dim)
        self.attn = CrossAttention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pos_q: torch.Tensor, kv: torch.Tensor, pos_k: torch.Tensor) -> torch.Tensor:
        attended = self.attn(self.norm_q(x + pos_q), self.norm_k(kv + pos_k), self.norm_v(kv))
        x = self.norm2(x + self.drop_path(self.ls1(attended)))
        return x + self.drop_path(self.ls2(self.mlp(x)))


@HEADS.register_module()
class CAERegressor(nn.Module):
    """Predict the latent representation of every removed patch from the visible patches' latents.

    The queries start as one shared learnable mask token per removed patch. In every block they attend to the
    visible patch latents concatenated with the current queries, so a query sees the context and the other
    predictions but only through cross-attention: there is no self-attention block, and the visible latents
    are never updated. The encoder's [cls] latent is left out of the keys and values, as in the CAE authors'
    code (``LatentRegresser`` in Atten4Vis/CAE ``models/modeling_cae_helper.py`` gets the patch latents only)
    and mmpretrain's CAE; every key then carries a patch position. Width equals the encoder's, because the
    output is aligned with the teacher encoder's latents.

    Args:
        grid: patch grid (H, W) of the encoder.
        embed_dim: width D (the encoder's; filled in by the algorithm).
        depth, num_heads, mlp_ratio: blocks, heads, MLP width ratio.
        layer_scale_init: initial LayerScale value (None: no layer scale).
        drop_path_rate: stochastic depth, linearly increasing over the blocks (the authors: 0.1, the
            encoder's rate).
        num_masked: when given, the number of removed patches per image this regressor is configured for; the
            algorithm checks it against its masker at build time.
        kv_include_cls: also put the [cls] latent (with the all-zero cls position) into the keys and values,
            as this class did at ``identity_version`` 1. Off by default; kept to reproduce those runs.

    ``forward(latent, ids_keep, ids_masked)``:
        latent: ``[B, 1 + Lv, D]`` encoder output for the visible patches (cls first), in ``ids_keep`` order.
        ids_keep: ``[B, Lv]`` positions of the visible patches; ids_masked: ``[B, Lm]`` of the removed ones.
        Returns ``[B, Lm, D]``, the predicted latents of the removed patches in ``ids_masked`` order.
    """

    # 2: the [cls] latent no longer enters the keys/values (kv_include_cls=False), following the authors' code.
    identity_version = 2

    def __init__(self, grid: tuple[int, int], embed_dim: int, depth: int = 4, num_heads: int = 12,
                 mlp_ratio: float = 4.0, layer_scale_init: float | None = None, drop_path_rate: float = 0.0,
                 num_masked: int | None = None, kv_include_cls: bool = False):
        super().__init__()
        if depth < 1:
            raise ValueError(f'regressor depth must be >= 1, got {depth}')
        self.grid = tuple(grid)
        self.num_masked = num_masked
        self.kv_include_cls = bool(kv_include_cls)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer('pos_embed', sincos_pos_embed_2d(embed_dim, self.grid, cls_token=True)[None])
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList([
            CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, layer_scale_init=layer_scale_init, drop_path=dpr[i])
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        init_vit_weights(self)   # leaves LayerScale's gamma at layer_scale_init

    def forward(self, latent: torch.Tensor, ids_keep: torch.Tensor, ids_masked: torch.Tensor) -> torch.Tensor:
        B = latent.shape[0]
        pos = self.pos_embed.expand(B, -1, -1).to(latent.dtype)
        pos_cls, pos_patches = pos[:, :1], pos[:, 1:]
        pos_visible = gather_tokens(pos_patches, ids_keep)                                # [B, Lv, D]
        context = latent[:, 1:]                                                           # [B, Lv, D]
        if self.kv_include_cls:
            pos_visible = torch.cat([pos_cls, pos_visible], dim=1)                        # [B, 1 + Lv, D]
            context = latent
        pos_masked = gather_tokens(pos_patches, ids_masked)                               # [B, Lm, D]
        pos_k = torch.cat([pos_visible, pos_masked], dim=1)                               # [B, (1 +) L, D]
        x = self.mask_token.to(latent.dtype).expand(B, ids_masked.shape[1], -1)           # [B, Lm, D]
        for block in self.blocks:
            x = block(x, pos_masked, torch.cat([context, x], dim=1), pos_k)
        return self.norm(x)
