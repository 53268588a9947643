"""Image datasets on disk (``root[/split]/<class>/<images>``) and the base classes every mimbench dataset shares.

Item contract (what the training loop relies on): ``dataset[i]`` is ``{'inputs': uint8 [3, H, W], 'label': int}``
(label -1 when unknown); torch's ``default_collate`` turns a batch into ``inputs [B, 3, H, W] uint8`` and
``label [B]``. Float conversion and normalization happen later, on the device.

``ImageFolder(in_memory=True)`` decodes every image once into one uint8 tensor ``[N, 3, H, W]`` so that
CPU training is not bound by JPEG decoding, and caches that tensor on disk (see :func:`cache_dir`) so the next
run skips decoding altogether.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from mmengine.logging import print_log
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from mimbench.data.transforms import Compose, build_pipeline
from mimbench.errors import MimbenchError
from mimbench.fileio import atomic_path
from mimbench.registry import DATASETS

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
# Bump when the cache payload layout or the decoding (mode, resize) changes: old files then never match.
CACHE_VERSION = 1
_PROGRESS_EVERY = 10_000

PathLike = Union[str, os.PathLike]
Pipeline = Union[Sequence[Union[dict, Callable]], Compose, None]


class DatasetError(MimbenchError, ValueError):
    """Data that cannot be found or read; the message names the offending path."""


# ----------------------------------------------------------------------------------------------- base classes


class ImageDataset(Dataset):
    """Base of every mimbench dataset: applies the pipeline and enforces the item contract.

    Subclasses set ``classes`` and implement ``_image(i) -> uint8 [3, H, W]`` and ``_label(i) -> int``.
    """

    classes: list[str]

    def __init__(self, pipeline: Pipeline = None) -> None:
        self.pipeline = build_pipeline(pipeline)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def metainfo(self) -> dict:
        # mmengine's train loop hands this to the visualizer; without it it logs a warning every run.
        return {'classes': tuple(self.classes)}

    def _image(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def _label(self, index: int) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        """``{'inputs': uint8 [3, H, W] after the pipeline, 'label': int}``."""
        img = self.pipeline(self._image(index))
        # A user-supplied callable that returns floats or HWC would otherwise only surface as a confusing
        # error on the device, far from its cause.
        if not (isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and img.dim() == 3
                and img.shape[0] == 3):
            got = f'{img.dtype} {tuple(img.shape)}' if isinstance(img, torch.Tensor) else type(img).__name__
            raise TypeError(f'pipeline {self.pipeline!r} must return a uint8 tensor [3, H, W], got {got}')
        return {'inputs': img, 'label': self._label(index)}

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_images={len(self)}, num_classes={self.num_classes}, '
                f'pipeline={self.pipeline!r})')


class InMemoryImages(ImageDataset):
    """A dataset held as one uint8 tensor ``images [N, 3, H, W]`` with int64 ``labels [N]``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | Sequence[int], classes: Sequence[str],
                 pipeline: Pipeline = None) -> None:
        super().__init__(pipeline)
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}')
        if labels.shape != (images.shape[0],):
            raise ValueError(f'labels must be [N={images.shape[0]}], got {tuple(labels.shape)}')
        self.images = images
        self.labels = labels
        self.classes = list(classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def _image(self, index: int) -> torch.Tensor:
        # A view would share the storage of the whole [N, 3, H, W] tensor; sent from a DataLoader worker
        # uncollated, it would move that entire tensor to shared memory. A 3 KB copy avoids that trap.
        return self.images[index].clone()

    def _label(self, index: int) -> int:
        return int(self.labels[index])


# ---------------------------------------------------------------------------------------- scanning, decoding


def scan_image_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted sub-folder names) and ``(path, label)`` samples, sorted, of ``folder/<class>/...``.

    Images are found recursively by extension (case-insensitive); hidden files and folders are skipped.
    Paths are plain strings: building 50k ``Path`` objects costs more than the whole directory walk.
    Raises DatasetError when ``folder`` is missing, has no class folders, or a class folder has no images.
    """
    if not folder.is_dir():
        raise DatasetError(f'image folder {folder} does not exist')
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith('.'))
    if not classes:
        raise DatasetError(f'no class folders in {folder}: expected the layout {folder}/<class>/<images>')
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, name), followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith('.')]
            found.extend(os.path.join(dirpath, f) for f in filenames
                         if not f.startswith('.') and f.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise DatasetError(f'class folder {folder / name} contains no images '
                               f'(looked for {", ".join(IMAGE_EXTENSIONS)}, any case)')
        samples.extend((p, label) for p in sorted(found))
    return classes, samples


def _as_hw(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or not all(isinstance(s, int) and s > 0 for s in hw):
        raise ValueError(f'image_size must be None, a positive int or a pair (h, w), got {image_size!r}')
    return hw


def load_image(path: PathLike, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode one image file to uint8 RGB ``[3, H, W]``, resized to exactly ``image_size`` if given.

    Raises DatasetError naming the file when it cannot be read or decoded.
    """
    try:
        if str(path).lower().endswith('.bmp'):
            img = _decode_with_pil(path)
        else:
            # read_file + decode_image: libjpeg-turbo / libpng, no PIL round trip.
            img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except Exception as e:  # noqa: BLE001 -- any failure here means "this file is unusable"
        raise DatasetError(f'cannot read image {path}: {type(e).__name__}: {_last_line(e)}') from None
    if image_size is not None and tuple(img.shape[-2:]) != image_size:
        img = TF.resize(img, list(image_size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    return img


def _decode_with_pil(path: PathLike) -> torch.Tensor:
    # torchvision's decoders do not read BMP.
    from PIL import Image
    with Image.open(path) as im:
        arr = np.asarray(im.convert('RGB'))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _last_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[-1] if text else ''


# -------------------------------------------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$MIMBENCH_CACHE`` if set, else ``~/.cache/mimbench``."""
    return Path(os.environ.get('MIMBENCH_CACHE') or Path.home() / '.cache' / 'mimbench').expanduser()


def _cache_key(folder: Path, samples: Sequence[tuple[str, int]], image_size: tuple[int, int] | None) -> str:
    """Hash of what the decoded tensor depends on: the sorted files (relative path, size, mtime), image_size.

    Any added, removed, renamed or rewritten file changes the key, so a stale cache is simply never found.
    """
    h = hashlib.sha256(f'mimbench-imagefolder v{CACHE_VERSION} rgb image_size={image_size}\n'.encode())
    prefix = len(os.path.join(folder, ''))
    for path, _ in samples:
        st = os.stat(path)
        h.update(f'{path[prefix:]}\t{st.st_size}\t{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()


def _checksum(images: torch.Tensor) -> int:
    # crc32 over ~150 MB takes ~0.1 s: cheap insurance against a truncated or bit-flipped cache file.
    return zlib.crc32(images.contiguous().numpy().data)


def _read_cache(path: Path, key: str, num_images: int) -> torch.Tensor | None:
    """The cached ``[N, 3, H, W]`` tensor, or None when missing, stale or corrupt (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
        images = payload['images']
        ok = (payload.get('version') == CACHE_VERSION and payload.get('key') == key
              and isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
              and images.shape[0] == num_images and images.shape[1] == 3
              and payload.get('crc32') == _checksum(images))
    except Exception as e:  # noqa: BLE001 -- an unreadable cache is rebuilt, whatever the reason
        print_log(f'ignoring unreadable dataset cache {path} ({type(e).__name__}); rebuilding it',
                  logger='current', level=logging.WARNING)
        return None
    if not ok:
        print_log(f'ignoring stale or corrupt dataset cache {path}; rebuilding it', logger='current',
                  level=logging.WARNING)
        return None
    return images


def _write_cache(path: Path, key: str, images: torch.Tensor) -> None:
    """Write atomically, so a crash or a concurrent reader never sees half a file."""
    try:
        with atomic_path(path) as tmp:
            torch.save({'version': CACHE_VERSION, 'key': key, 'crc32': _checksum(images), 'images': images}, tmp)
    except Exception as e:  # noqa: BLE001 -- torch.save reports a full disk as RuntimeError
        # A cache is an optimisation: a read-only or full disk must not stop training.
        print_log(f'could not write dataset cache {path}: {e}', logger='current', level=logging.WARNING)


def _cache_name(folder: Path, key: str) -> str:
    stem = '_'.join(p for p in folder.resolve().parts[-2:] if p not in ('/', ''))
    stem = ''.join(c if c.isalnum() or c in '-_' else '_' for c in stem) or 'images'
    return f'{stem}-{key[:24]}.pt'


# ---------------------------------------------------------------------------------------------- ImageFolder


def decode_all(samples: Sequence[tuple[str, int]], image_size: tuple[int, int] | None,
               what: str) -> torch.Tensor:
    """Decode every sample into one uint8 tensor ``[N, 3, H, W]``, logging progress every 10k images.

    Raises DatasetError naming the first unreadable file, or the first file whose size differs from the
    first image's when ``image_size`` is None.
    """
    n = len(samples)
    print_log(f'decoding {n} images from {what} into memory', logger='current')
    start = time.perf_counter()
    first = load_image(samples[0][0], image_size)
    images = torch.empty((n, *first.shape), dtype=torch.uint8)
    images[0] = first
    for i in range(1, n):
        path = samples[i][0]
        img = load_image(path, image_size)
        if img.shape != first.shape:
            raise DatasetError(
                f'cannot stack images of different sizes in memory: {path} is {img.shape[1]}x{img.shape[2]} '
                f'but {samples[0][0]} is {first.shape[1]}x{first.shape[2]} (H x W); pass image_size=... to '
                f'resize every image while loading')
        images[i] = img
        if (i + 1) % _PROGRESS_EVERY == 0 and i + 1 < n:
            elapsed = time.perf_counter() - start
            print_log(f'  decoded {i + 1}/{n} images ({(i + 1) / elapsed:.0f} img/s)', logger='current')
    print_log(f'decoded {n} images -> {tuple(images.shape)} uint8 in {time.perf_counter() - start:.1f} s',
              logger='current')
    return images


@DATASETS.register_module()
class ImageFolder(ImageDataset):
    """Images in ``root[/split]/<class>/<images>``; classes are the sorted sub-folder names.

    Args:
        root: dataset root.
        split: optional sub-folder of ``root`` (e.g. ``'train'``).
        pipeline: per-sample transforms (configs built through ``TRANSFORMS``, or callables).
        in_memory: decode everything once into ``images [N, 3, H, W]`` uint8 (all images must share one
            size unless ``image_size`` is given), cached on disk under :func:`cache_dir`. Otherwise images are
            decoded in ``__getitem__``.
        image_size: int or (h, w): resize every image to exactly this size when decoding (aspect ratio is
            not kept).
        cache: read/write the on-disk cache of the decoded tensor (in_memory only).

    Attributes: ``classes``, ``num_classes``, ``samples`` (list of ``(path str, label)``), and when in memory
    ``images [N, 3, H, W]`` uint8 and ``labels [N]`` int64.
    """

    def __init__(self, root: PathLike, split: str | None = None, pipeline: Pipeline = None,
                 in_memory: bool = False, image_size: int | Sequence[int] | None = None,
                 cache: bool = True) -> None:
        super().__init__(pipeline)
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetError(f'dataset root {root} does not exist')
        folder = root / split if split else root
        if not folder.is_dir():
            found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith('.'))
            raise DatasetError(f'split folder {folder} does not exist (folders in {root}: '
                               f'{", ".join(found) or "none"})')
        self.folder = folder
        self.image_size = _as_hw(image_size)
        self.in_memory = in_memory
        self.classes, self.samples = scan_image_folder(folder)
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        self.images: torch.Tensor | None = None
        self.cache_path: Path | None = None
        if in_memory:
            self.images = self._load_all(cache)

    def _load_all(self, cache: bool) -> torch.Tensor:
        if not cache:
            return decode_all(self.samples, self.image_size, str(self.folder))
        key = _cache_key(self.folder, self.samples, self.image_size)
        self.cache_path = cache_dir() / _cache_name(self.folder, key)
        start = time.perf_counter()
        images = _read_cache(self.cache_path, key, len(self.samples))
        if images is not None:
            print_log(f'loaded {tuple(images.shape)} decoded images of {self.folder} from cache '
                      f'{self.cache_path} in {time.perf_counter() - start:.1f} s', logger='current')
            return images
        images = decode_all(self.samples, self.image_size, str(self.folder))
        _write_cache(self.cache_path, key, images)
        return images

    def __len__(self) -> int:
        return len(self.samples)

    def _image(self, index: int) -> torch.Tensor:
        if self.images is not None:
            return self.images[index].clone()  # see InMemoryImages._image for why not a view
        return load_image(self.samples[index][0], self.image_size)

    def _label(self, index: int) -> int:
        return self.samples[index][1]

    def __repr__(self) -> str:
        return (f'ImageFolder({self.folder}, num_images={len(self)}, num_classes={self.num_classes}, '
                f'in_memory={self.in_memory}, pipeline={self.pipeline!r})')


def unaugmented_split(dataset_cfg, split: str | None = None, data_root: str | None = None,
                      pipeline: Sequence = ()) -> ImageDataset:
    """A training config's dataset without its augmentation, for measuring and picturing: ``split`` in place of
    its own where the dataset has splits (synthetic images are used as they are), at ``data_root`` when given,
    with ``pipeline`` (default: none, the stored images)."""
    cfg = dict(dataset_cfg.to_dict() if hasattr(dataset_cfg, 'to_dict') else dataset_cfg, pipeline=list(pipeline))
    if data_root:
        cfg['root'] = data_root
    if split is not None and 'split' in cfg:
        cfg['split'] = split
    return DATASETS.build(cfg)
