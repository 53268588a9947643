"""Datasets, transforms and samplers; importing this package registers them in mimbench's registries.

Every dataset item is ``{'inputs': uint8 [3, H, W], 'label': int}`` (label -1 when unknown); batches come
from torch's ``default_collate``. See ``folder.py`` for the contract and the decoded-image cache.
"""
from __future__ import annotations

from mimbench.data.cifar import CIFAR10
from mimbench.data.device import (BatchHorizontalFlip, BatchRandomResizedCrop, DeviceBatchLoader,
                                  to_device_loader)
from mimbench.data.folder import (DatasetError, ImageDataset, ImageFolder, InMemoryImages, cache_dir,
                                  load_image, scan_image_folder, unaugmented_split)
from mimbench.data.sampler import ResumableSampler
from mimbench.data.synthetic import SyntheticImages
from mimbench.data.transforms import (CenterCrop, ColorJitter, Compose, RandomCrop, RandomHorizontalFlip,
                                      RandomResizedCrop, Resize, build_pipeline)

__all__ = [
    'BatchHorizontalFlip', 'BatchRandomResizedCrop', 'DeviceBatchLoader', 'to_device_loader',
    'CIFAR10', 'CenterCrop', 'ColorJitter', 'Compose', 'DatasetError', 'ImageDataset', 'ImageFolder',
    'InMemoryImages', 'RandomCrop', 'RandomHorizontalFlip', 'RandomResizedCrop', 'ResumableSampler', 'Resize',
    'SyntheticImages', 'build_pipeline', 'cache_dir', 'load_image', 'scan_image_folder', 'unaugmented_split',
]
