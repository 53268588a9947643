"""CIFAR-10, always held in memory as ``images [N, 3, 32, 32]`` uint8 (50,000 train / 10,000 test)."""
from __future__ import annotations

import contextlib
import logging
import pickle
import socket
from pathlib import Path

import numpy as np
import torch
from mmengine.logging import print_log

from mimbench.data.folder import DatasetError, ImageFolder, InMemoryImages, PathLike, Pipeline
from mimbench.registry import DATASETS

BATCHES_DIR = 'cifar-10-batches-py'
_BATCH_FILES = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}
# Per socket operation: enough for a slow mirror, short enough that an offline machine fails in seconds
# instead of hanging in connect().
DOWNLOAD_TIMEOUT_S = 20.0
HINT = 'pass --data-root DIR with cifar-10-batches-py/ or train/<class>/*.jpg'


@DATASETS.register_module()
class CIFAR10(InMemoryImages):
    """CIFAR-10 from ``root``, tried in this order:

    (a) the official python format ``root/cifar-10-batches-py/`` (or ``root`` itself holding the batches);
    (b) an ImageFolder layout ``root/<split>/<class>/*.jpg``, decoded once and cached (see ImageFolder);
    (c) if ``download``: torchvision's downloader into ``root``, with a bounded socket timeout.
    When all fail, a DatasetError says what was looked for where and how to point at the data.

    Items: ``{'inputs': uint8 [3, 32, 32] after the pipeline, 'label': int in [0, 10)}``. Attributes:
    ``images [N, 3, 32, 32]`` uint8, ``labels [N]`` int64, ``classes``, ``split``, ``source`` (what was loaded).
    """

    def __init__(self, root: PathLike, split: str = 'train', pipeline: Pipeline = None,
                 download: bool = True) -> None:
        if split not in ('train', 'test'):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        root = Path(root).expanduser()
        images, labels, classes, source = _find_and_load(root, split, download)
        super().__init__(images, labels, classes, pipeline)
        self.split = split
        self.source = source

    def __repr__(self) -> str:
        return (f'CIFAR10(split={self.split!r}, num_images={len(self)}, source={self.source}, '
                f'pipeline={self.pipeline!r})')


def _find_and_load(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
    batches = _find_batches(root)
    if batches is not None:
        return (*_load_batches(batches, split), str(batches))
    folder = root / split
    if folder.is_dir():
        ds = ImageFolder(root, split=split, in_memory=True)
        if ds.num_classes != 10:
            print_log(f'{folder} has {ds.num_classes} class folders, CIFAR-10 has 10', logger='current',
                      level=logging.WARNING)
        return ds.images, ds.labels, ds.classes, str(folder)
    looked = f'looked for {root / BATCHES_DIR}/ and {folder}/<class>/*.jpg'
    if not download:
        raise DatasetError(f'CIFAR-10 {split} split not found: {looked}; {HINT}')
    _download(root, split, looked)
    return (*_load_batches(root / BATCHES_DIR, split), str(root / BATCHES_DIR))


def _find_batches(root: Path) -> Path | None:
    for candidate in (root / BATCHES_DIR, root):
        if (candidate / 'batches.meta').is_file():
            return candidate
    return None


def _unpickle(path: Path) -> dict:
    # The batches are pickles written by Python 2: latin1 keeps the byte strings (and numpy arrays) intact.
    try:
        with open(path, 'rb') as f:
            return pickle.load(f, encoding='latin1')
    except Exception as e:  # noqa: BLE001 -- missing, truncated or foreign file: all mean "unusable"
        raise DatasetError(f'cannot read CIFAR-10 batch {path}: {type(e).__name__}: {e}') from None


def _load_batches(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``images [N, 3, 32, 32]`` uint8, ``labels [N]`` int64 and the class names from the python batches."""
    classes = list(_unpickle(folder / 'batches.meta')['label_names'])
    data, labels = [], []
    for name in _BATCH_FILES[split]:
        path = folder / name
        batch = _unpickle(path)
        try:
            # Rows are 3072 bytes: the 1024 red, then green, then blue values, each plane row-major.
            arr = np.asarray(batch['data'], dtype=np.uint8).reshape(-1, 3, 32, 32)
            lab = np.asarray(batch['labels'], dtype=np.int64)
        except (KeyError, ValueError) as e:
            raise DatasetError(f'malformed CIFAR-10 batch {path}: {type(e).__name__}: {e}') from None
        if len(arr) != len(lab):
            raise DatasetError(f'malformed CIFAR-10 batch {path}: {len(arr)} images but {len(lab)} labels')
        data.append(arr)
        labels.append(lab)
    return torch.from_numpy(np.concatenate(data)), torch.from_numpy(np.concatenate(labels)), classes


def _download(root: Path, split: str, looked: str) -> None:
    """torchvision's CIFAR-10 download into ``root``; any failure becomes a short DatasetError."""
    import torchvision.datasets  # heavy import, only needed here

    created = not root.exists()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torchvision.datasets.CIFAR10(str(root), train=split == 'train', download=True)
    except Exception as e:  # noqa: BLE001 -- offline, DNS, HTTP, disk, checksum: the advice is the same
        if created:  # don't leave an empty folder behind that looks like a data root; partial files stay
            with contextlib.suppress(OSError):
                root.rmdir()
        raise DatasetError(f'CIFAR-10 {split} split not found: {looked}; downloading it to {root} failed '
                           f'({type(e).__name__}: {str(e)[:200]}; no network?); {HINT}') from None
    finally:
        socket.setdefaulttimeout(previous)
