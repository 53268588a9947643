"""MAE's grid-wise sampling: one visible patch per cell."""
from __future__ import annotations

from numbers import Integral

import torch

from mimbench.masking.base import BaseMasker, to_grid
from mimbench.registry import MASKERS


@MASKERS.register_module()
class GridMasker(BaseMasker):
    """Keep one patch in every ``cell x cell`` block of the grid, remove the rest (ratio ``1 - 1 / cell**2``).

    The MAE paper's grid-wise sampling keeps a fixed regular lattice. Here the lattice's phase is random per
    image: one offset ``(dy, dx)`` is drawn uniformly from the ``cell * cell`` choices and used in every cell of
    that image, so the kept patches are still a regular lattice but images differ. With only ``cell**2``
    possible masks, images in a large batch share masks.

    Args:
        grid: patches per side (int) or ``(H, W)``; H and W must be divisible by ``cell``.
        cell: side of the cell holding one kept patch, ``>= 2`` (2 removes 75%).

    ``masker(B)`` returns ``mask: [B, L] bool``, True = removed, exactly ``L - L / cell**2`` True per row.
    """

    def __init__(self, grid: int | tuple[int, int], cell: int = 2) -> None:
        h, w = to_grid(grid)
        if isinstance(cell, bool) or not isinstance(cell, Integral) or cell < 2:
            raise ValueError(f'cell must be an int >= 2, got {cell!r}')
        if h % cell or w % cell:
            raise ValueError(f'grid must be divisible by cell in both H and W, got grid {h}x{w} and cell={cell}')
        super().__init__((h, w), h * w - (h // cell) * (w // cell))
        self.cell = int(cell)

    def _sample(self, batch_size: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        h, w = self.grid
        offset = torch.randint(0, self.cell ** 2, (batch_size,), device=device, generator=generator)
        dy, dx = offset // self.cell, offset % self.cell
        row_phase = torch.arange(h, device=device) % self.cell
        col_phase = torch.arange(w, device=device) % self.cell
        keep = (row_phase[None, :, None] == dy[:, None, None]) & (col_phase[None, None, :] == dx[:, None, None])
        return ~keep.reshape(batch_size, self.num_patches)

    def __repr__(self) -> str:
        h, w = self.grid
        return f'GridMasker(grid=({h}, {w}), cell={self.cell}, num_masked={self.num_masked})'
