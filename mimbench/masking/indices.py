"""Index bookkeeping shared by every masker and every model that gathers visible or masked tokens."""
from __future__ import annotations

from typing import NamedTuple

import torch


class MaskIndices(NamedTuple):
    """Positions of a boolean mask, split by kind.

    ids_keep:    [B, Lv] positions of the visible patches, ascending.
    ids_masked:  [B, Lm] positions of the removed patches, ascending.
    ids_shuffle: [B, L]  ``cat([ids_keep, ids_masked], 1)``: the order in which the sequence is laid out when
                 visible tokens come first.
    ids_restore: [B, L]  inverse permutation of ``ids_shuffle``: ``x_shuffled.gather(1, ids_restore)`` puts a
                 sequence laid out as ``[visible..., masked...]`` back into image order.
    """

    ids_keep: torch.Tensor
    ids_masked: torch.Tensor
    ids_shuffle: torch.Tensor
    ids_restore: torch.Tensor


def split_indices(mask: torch.Tensor) -> MaskIndices:
    """Split a mask ``[B, L]`` (True = removed, the same count in every row) into index tensors.

    A stable sort of the mask puts the visible positions (False) first, each group in ascending order, so
    any masker's output can drive MAE-style gather/restore without the masker having to expose its own
    permutation.
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f'mask must be a bool tensor [B, L], got {tuple(mask.shape)} {mask.dtype}')
    counts = mask.sum(1)
    if counts.numel() and not bool((counts == counts[0]).all()):
        raise ValueError(f'every image must have the same number of removed patches, got counts '
                         f'{counts.tolist()}')
    num_masked = int(counts[0]) if counts.numel() else 0
    ids_shuffle = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    num_keep = mask.shape[1] - num_masked
    return MaskIndices(ids_shuffle[:, :num_keep], ids_shuffle[:, num_keep:], ids_shuffle, ids_restore)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Pick tokens ``x[b, ids[b, j]]``: x ``[B, L, D]``, ids ``[B, K]`` -> ``[B, K, D]``."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
