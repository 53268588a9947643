"""Which patches each image hides: maskers return ``mask: [B, L] bool``, True = removed.

Importing this package registers every masker in ``mimbench.registry.MASKERS``.
"""
from mimbench.masking.base import BaseMasker
from mimbench.masking.block import BlockMasker
from mimbench.masking.grid import GridMasker
from mimbench.masking.indices import MaskIndices, gather_tokens, split_indices
from mimbench.masking.random import RandomMasker

__all__ = ['BaseMasker', 'RandomMasker', 'BlockMasker', 'GridMasker', 'MaskIndices', 'split_indices',
           'gather_tokens']
