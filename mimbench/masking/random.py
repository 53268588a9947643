"""MAE's uniform random masking."""
from __future__ import annotations

import torch

from mimbench.masking.base import (BaseMasker, Device, check_batch_size, num_masked_for_ratio, sampling_device,
                                   to_grid)
from mimbench.registry import MASKERS


@MASKERS.register_module()
class RandomMasker(BaseMasker):
    """Remove a uniformly random subset of patches from each image, independently per image (MAE).

    Per image: noise ``[L]`` uniform, ``ids_shuffle = argsort(noise)``, ``ids_restore = argsort(ids_shuffle)``;
    the first ``int(L * (1 - ratio))`` positions of ``ids_shuffle`` stay visible, the rest are removed.

    Args:
        grid: patches per side (int) or ``(H, W)``.
        ratio: fraction removed, in (0, 1); must keep at least one patch and remove at least one.

    ``masker(B)`` returns ``mask: [B, L] bool``, True = removed; :meth:`sample` also returns the permutations.
    """

    def __init__(self, grid: int | tuple[int, int], ratio: float = 0.75) -> None:
        h, w = to_grid(grid)  # checked first so that a bad grid is reported as such, not as a bad ratio
        super().__init__((h, w), num_masked_for_ratio(h * w, ratio))

    def sample(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw masks together with MAE's permutations.

        Returns:
            mask: ``[B, L] bool``, True = removed.
            ids_shuffle: ``[B, L] long``, the kept positions first (in noise order, not ascending).
            ids_restore: ``[B, L] long``, inverse of ``ids_shuffle``; ``mask`` equals
                ``cat([zeros(L - num_masked), ones(num_masked)])`` gathered along dim 1 with ``ids_restore``.
        """
        batch_size = check_batch_size(batch_size)
        mask, ids_shuffle, ids_restore = self._draw(batch_size, sampling_device(device, generator), generator)
        device = device if device is not None else 'cpu'
        return mask.to(device), ids_shuffle.to(device), ids_restore.to(device)

    def _sample(self, batch_size: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        return self._draw(batch_size, device, generator)[0]

    def _draw(self, batch_size: int, device: torch.device, generator: torch.Generator | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        num_keep = self.num_patches - self.num_masked
        noise = torch.rand(batch_size, self.num_patches, device=device, generator=generator)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        # In shuffled order the removed patches are simply the tail; un-shuffling puts them in image order.
        shuffled = torch.ones(batch_size, self.num_patches, dtype=torch.bool, device=device)
        shuffled[:, :num_keep] = False
        mask = torch.gather(shuffled, 1, ids_restore)
        return mask, ids_shuffle, ids_restore
