"""Shape statistics of masks: how many 4-connected pieces they fall into, how large they are, how many patches.

Used to compare block-wise maskers with the authors' generators (``tools/mask_stats.py``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

# 4-connectivity: patches touching by an edge belong to one piece, diagonal neighbours do not.
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def mask_shape_stats(draw: Callable[[], np.ndarray], draws: int = 500) -> dict:
    """Draw ``draws`` masks with ``draw() -> [H, W]`` (nonzero = removed) and summarise their shape.

    Returns a dict: ``pieces_mean``/``pieces_std`` (4-connected pieces per mask), ``largest_mean`` (patches in the
    largest piece), ``single_patch_pieces_mean`` (pieces of one patch), ``count_mean``/``count_min``/``count_max``
    (patches removed per mask) and ``draws``.
    """
    pieces, largest, singles, counts = [], [], [], []
    for _ in range(draws):
        mask = np.asarray(draw()) != 0
        labels, n = ndimage.label(mask, structure=_FOUR_CONNECTED)
        sizes = np.bincount(labels.ravel())[1:]
        pieces.append(n)
        largest.append(int(sizes.max()) if n else 0)
        singles.append(int((sizes == 1).sum()))
        counts.append(int(mask.sum()))
    return dict(draws=draws, pieces_mean=float(np.mean(pieces)), pieces_std=float(np.std(pieces)),
                largest_mean=float(np.mean(largest)), single_patch_pieces_mean=float(np.mean(singles)),
                count_mean=float(np.mean(counts)), count_min=int(np.min(counts)), count_max=int(np.max(counts)))
