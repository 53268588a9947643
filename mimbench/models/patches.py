"""Patchify / unpatchify and fixed 2-D sin-cos position embeddings."""
from __future__ import annotations

import torch
from einops import rearrange


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping patches.

    imgs: ``[B, C, H, W]`` with H and W multiples of ``patch_size``.
    Returns ``[B, L, p*p*C]`` with L = (H/p)*(W/p), patches in row-major order, each flattened as (p, p, C)
    so that a patch's channels stay together (the layout MAE's pixel head predicts).
    """
    B, C, H, W = imgs.shape
    if H % patch_size or W % patch_size:
        raise ValueError(f'image size {H}x{W} is not a multiple of patch_size {patch_size}')
    return rearrange(imgs, 'b c (h p) (w q) -> b (h w) (p q c)', p=patch_size, q=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, L, p*p*C]`` -> ``[B, C, H*p, W*p]`` for ``grid = (H, W)``."""
    h, w = grid
    return rearrange(patches, 'b (h w) (p q c) -> b c (h p) (w q)', h=h, w=w, p=patch_size, q=patch_size,
                     c=channels)


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[N]`` positions -> ``[N, dim]``: sin on the first half, cos on the second, frequencies 1/10000^(2i/dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int], cls_token: bool = False) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding.

    Half of the channels encode the row, half the column (each as a 1-D sin-cos code), as in MAE.
    Returns ``[L, dim]``, or ``[1 + L, dim]`` with a leading all-zero row for the cls token.
    """
    if dim % 4:
        raise ValueError(f'embedding dim must be a multiple of 4 for a 2-D sin-cos code, got {dim}')
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    emb = torch.cat([_sincos_1d(dim // 2, rows.flatten()), _sincos_1d(dim // 2, cols.flatten())], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()
