"""The contract every masker keeps, and the argument checks they share."""
from __future__ import annotations

from numbers import Integral, Real

import torch

Device = torch.device | str | None


def to_grid(grid: int | tuple[int, int]) -> tuple[int, int]:
    """``8`` -> ``(8, 8)``; ``(H, W)`` -> ``(H, W)``; anything else is a ``ValueError`` naming ``grid``."""
    if isinstance(grid, Integral) and not isinstance(grid, bool):
        grid = (grid, grid)
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or not all(isinstance(n, Integral) and not isinstance(n, bool) for n in grid)):
        raise ValueError(f'grid must be an int or an (H, W) pair of ints, got {grid!r}')
    h, w = int(grid[0]), int(grid[1])
    if h < 1 or w < 1 or h * w < 2:
        # One patch cannot be split into a visible and a removed part.
        raise ValueError(f'grid must have H, W >= 1 and at least 2 patches, got {grid!r}')
    return h, w


def check_ratio(ratio: float) -> float:
    """``0 < ratio < 1``, else a ``ValueError`` naming ``ratio``."""
    if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0 < ratio < 1:
        raise ValueError(f'ratio must be in (0, 1), got {ratio!r}')
    return float(ratio)


def num_masked_for_ratio(num_patches: int, ratio: float) -> int:
    """Patches removed at ``ratio``: ``L - int(L * (1 - ratio))``, MAE's rule (it keeps ``int(L * (1 - ratio))``).

    Every ratio-driven masker uses this one rule so that two maskers at the same ratio leave the encoder the same
    number of visible tokens.
    """
    ratio = check_ratio(ratio)
    num_masked = num_patches - int(num_patches * (1 - ratio))
    # ratio > 0 always removes at least one patch; only keeping none can go wrong.
    if num_masked > num_patches - 1:
        raise ValueError(f'ratio must leave a patch visible: int({num_patches} * (1 - ratio)) patches are kept, '
                         f'so ratio must be below 1 - 1/{num_patches} = {1 - 1 / num_patches:.4g}; got {ratio!r}')
    return num_masked


class BaseMasker:
    """Draws which patches of a ``grid`` of patches each image hides.

    Calling a masker with a batch size returns ``mask: [B, L] bool``, True = removed, with L = H * W patches in
    row-major order and exactly ``num_masked`` True in every row (so models can gather a fixed number of visible
    tokens per image, see :func:`mimbench.masking.split_indices`). Each image gets its own draw. Passing the same
    seeded ``torch.Generator`` reproduces the masks exactly; the generator is used for every random draw.

    Subclasses set ``num_masked`` through ``super().__init__`` and implement :meth:`_sample`.

    Attributes:
        grid: ``(H, W)``, the rows and columns of patches.
        num_patches: ``L = H * W``.
        num_masked: patches removed per image, ``1 <= num_masked < L``.
    """

    def __init__(self, grid: int | tuple[int, int], num_masked: int) -> None:
        self.grid: tuple[int, int] = to_grid(grid)
        self.num_patches: int = self.grid[0] * self.grid[1]
        if (isinstance(num_masked, bool) or not isinstance(num_masked, Integral)
                or not 1 <= num_masked <= self.num_patches - 1):
            raise ValueError(f'num_masked must be an int in [1, {self.num_patches - 1}] (the grid '
                             f'{self.grid[0]}x{self.grid[1]} has {self.num_patches} patches), got {num_masked!r}')
        self.num_masked: int = int(num_masked)

    @property
    def ratio(self) -> float:
        """Fraction of patches removed, ``num_masked / num_patches``."""
        return self.num_masked / self.num_patches

    def __call__(self, batch_size: int, device: Device = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``mask: [batch_size, L] bool`` on ``device`` (CPU when None), True = removed."""
        mask = self._sample(check_batch_size(batch_size), sampling_device(device, generator), generator)
        return mask.to(device if device is not None else 'cpu')

    def _sample(self, batch_size: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """Draw ``[batch_size, L] bool`` on ``device`` (which is the generator's device when one is given)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        h, w = self.grid
        return f'{type(self).__name__}(grid=({h}, {w}), num_masked={self.num_masked}/{self.num_patches})'


def check_batch_size(batch_size: int) -> int:
    """An int ``>= 0``, else a ``ValueError`` naming ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 0:
        raise ValueError(f'batch_size must be an int >= 0, got {batch_size!r}')
    return int(batch_size)


def sampling_device(device: Device, generator: torch.Generator | None) -> torch.device:
    """Where to draw random numbers: a generator only draws on its own device, so it wins over ``device``."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device('cpu')
