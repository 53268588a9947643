"""The device data path: a dataset that fits in memory stays on the training device as uint8, and whole
batches are augmented there (random-resized crop + horizontal flip), with no per-sample work on the host.

On a GPU the per-sample CPU pipeline cannot keep up with a micro model (tens of thousands of images a second);
here one gather and one ``grid_sample`` per batch replace 256 crops, resizes and collations. The same code runs
on the CPU, where it also saves the per-sample pipeline's share of a step.

The batch augmentations follow torchvision's ``RandomResizedCrop`` in distribution (the same box rule: 10 tries
at a random area and log-uniform aspect ratio, then the central crop), not draw for draw, and resample with
``grid_sample`` (bicubic by default, pixel centres as torchvision's resize), without rounding back to uint8:
results are close to the per-sample path's, not equal, which is why a config that uses this path is another
cell. Random draws come from torch's global CPU generator, which the train loop reseeds every iteration, so a
resumed run draws what the uninterrupted run drew on any device.

    train_dataloader = dict(type='DeviceBatchLoader', batch_size=256, device='auto',
                            sampler=dict(type='ResumableSampler', shuffle=True),
                            dataset=dict(type='CIFAR10', root=..., split='train'),
                            augment=[dict(type='BatchRandomResizedCrop', size=32, scale=(0.2, 1.0)),
                                     dict(type='BatchHorizontalFlip')])

``tools/train.py --device-data`` turns a config's per-sample pipeline into this (:func:`to_device_loader`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from mmengine.config import Config

from mimbench.data.folder import InMemoryImages
from mimbench.data.transforms import _INTERPOLATIONS, Size, _check_range, _check_size
from mimbench.errors import MimbenchError
from mimbench.registry import DATA_SAMPLERS, DATASETS, TRANSFORMS

LOADER_TYPE = 'DeviceBatchLoader'


def sample_crop_boxes(n: int, height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                      tries: int = 10) -> torch.Tensor:
    """``[n, 4]`` float boxes ``(top, left, h, w)`` in pixels, by torchvision's ``RandomResizedCrop`` rule:
    the first of ``tries`` draws (area fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``)
    that fits, else the central crop at the nearest allowed ratio; the position is uniform where it fits."""
    area = height * width
    target = area * torch.empty(n, tries).uniform_(scale[0], scale[1])
    aspect = torch.exp(torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)         # the first draw that fits (0 when none does)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    none = ~fits.any(dim=1)
    w = torch.where(none, torch.full_like(w, fw), w)
    h = torch.where(none, torch.full_like(h, fh), h)
    top = torch.floor(torch.rand(n) * (height - h + 1))
    left = torch.floor(torch.rand(n) * (width - w + 1))
    top = torch.where(none, torch.div(height - h, 2, rounding_mode='floor'), top)
    left = torch.where(none, torch.div(width - w, 2, rounding_mode='floor'), left)
    return torch.stack([top, left, h, w], dim=1)


@TRANSFORMS.register_module()
class BatchRandomResizedCrop:
    """``[B, 3, H, W]`` (uint8 or float on the 0-255 scale, any device) -> float ``[B, 3, h, w]``: each image
    its own random crop (:func:`sample_crop_boxes`), resized to ``size`` by ``grid_sample``. A flip, when a
    :class:`BatchHorizontalFlip` follows, is folded into the same resampling."""

    batched = True

    def __init__(self, size: Size, scale: Sequence[float] = (0.2, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                 interpolation: str = 'bicubic') -> None:
        self.size = _check_size(size)
        self.scale = _check_range(scale, 'scale', 0.0, 1.0)
        self.ratio = _check_range(ratio, 'ratio', 0.0, math.inf)
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f'interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}')
        self.interpolation = interpolation

    def boxes(self, imgs: torch.Tensor) -> torch.Tensor:
        """This batch's random boxes ``[B, 4]`` (see :func:`sample_crop_boxes`)."""
        B, _, H, W = imgs.shape
        return sample_crop_boxes(B, H, W, self.scale, self.ratio)

    def resample(self, imgs: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
        """Crop ``boxes`` out of ``imgs`` at ``size``, mirrored where ``flip [B]`` is True."""
        B, _, H, W = imgs.shape
        top, left, h, w = boxes.unbind(1)
        # output u in [-1, 1] (pixel centres, align_corners=False) reads input x = left + (u + 1) / 2 * w pixels
        sx, sy = w / W, h / H
        tx, ty = (2 * left + w) / W - 1, (2 * top + h) / H - 1
        if flip is not None:
            sx = torch.where(flip, -sx, sx)
        theta = torch.zeros(B, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
        grid = F.affine_grid(theta.to(imgs.device), [B, 3, *self.size], align_corners=False)
        # Sample inside the crop only, as cropping first would: positions past the outer pixel centres read
        # the crop's edge, not the image beyond it (exact for bilinear; bicubic's outer taps still see it).
        lo = torch.stack([(2 * left + 1) / W - 1, (2 * top + 1) / H - 1], dim=1)
        hi = torch.stack([(2 * (left + w) - 1) / W - 1, (2 * (top + h) - 1) / H - 1], dim=1)
        grid = torch.maximum(torch.minimum(grid, hi.to(grid).view(B, 1, 1, 2)), lo.to(grid).view(B, 1, 1, 2))
        out = F.grid_sample(imgs.float(), grid, mode=self.interpolation, padding_mode='border',
                            align_corners=False)
        return out.clamp_(0, 255)    # bicubic overshoots; keep the 0-255 range the preprocessor expects

    def __call__(self, imgs: torch.Tensor) -> torch.Tensor:
        return self.resample(imgs, self.boxes(imgs))

    def __repr__(self) -> str:
        return (f'BatchRandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class BatchHorizontalFlip:
    """Mirror each image of ``[B, 3, H, W]`` left-right with probability ``p`` (drawn per image)."""

    batched = True

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f'p must be in [0, 1], got {p!r}')
        self.p = float(p)

    def draw(self, n: int) -> torch.Tensor:
        return torch.rand(n) < self.p

    def __call__(self, imgs: torch.Tensor) -> torch.Tensor:
        flip = self.draw(imgs.shape[0]).to(imgs.device)
        return torch.where(flip.view(-1, 1, 1, 1), imgs.flip(-1), imgs)

    def __repr__(self) -> str:
        return f'BatchHorizontalFlip(p={self.p})'


def augment_batch(imgs: torch.Tensor, steps: Sequence) -> torch.Tensor:
    """Apply batch transforms in order -> float ``[B, 3, h, w]``. A crop directly followed by a flip resamples
    once for both, drawing in the same order as the two steps would (boxes, then flips)."""
    i = 0
    while i < len(steps):
        step, nxt = steps[i], (steps[i + 1] if i + 1 < len(steps) else None)
        if isinstance(step, BatchRandomResizedCrop) and isinstance(nxt, BatchHorizontalFlip):
            boxes = step.boxes(imgs)
            imgs = step.resample(imgs, boxes, flip=nxt.draw(imgs.shape[0]))
            i += 2
        else:
            imgs = step(imgs)
            i += 1
    return imgs.float()


class DeviceBatchLoader:
    """Train batches of an in-memory dataset (:class:`~mimbench.data.InMemoryImages` without a pipeline),
    held on ``device`` as uint8 and augmented there a whole batch at a time.

    Iterating yields ``{'inputs': float [B, 3, h, w] on the 0-255 scale, 'label': int64 [B]}`` on ``device``,
    in the order of ``sampler`` (a :class:`~mimbench.data.ResumableSampler`: mid-epoch resume and the DDP
    split work as with a DataLoader). ``len()`` is batches per epoch; ``drop_last`` drops a short final batch.
    """

    def __init__(self, dataset: InMemoryImages, sampler, batch_size: int, augment: Sequence = (),
                 device: str | torch.device = 'auto', drop_last: bool = True):
        from mimbench.machine import resolve_device
        if not isinstance(dataset, InMemoryImages) or len(dataset.pipeline) != 0:
            raise MimbenchError(f'{LOADER_TYPE} needs an in-memory dataset without a per-sample pipeline (the '
                                f'augmentation runs on whole batches: its augment list), got {dataset!r}')
        self.dataset, self.sampler, self.batch_size, self.drop_last = dataset, sampler, int(batch_size), drop_last
        self.augment = list(augment)
        self.device = resolve_device(device)
        self.images = dataset.images.to(self.device)
        self.labels = dataset.labels.to(self.device)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        indices = torch.as_tensor(list(iter(self.sampler)), dtype=torch.int64)
        stop = len(indices) - len(indices) % self.batch_size if self.drop_last else len(indices)
        for start in range(0, stop, self.batch_size):
            idx = indices[start:start + self.batch_size].to(self.device)
            yield {'inputs': augment_batch(self.images.index_select(0, idx), self.augment),
                   'label': self.labels.index_select(0, idx)}


def build_device_loader(cfg: dict, seed: int | None = None) -> DeviceBatchLoader:
    """A :class:`DeviceBatchLoader` from its config dict (``type='DeviceBatchLoader'``)."""
    cfg = dict(cfg)
    cfg.pop('type', None)
    dataset = DATASETS.build(cfg.pop('dataset'))
    sampler_cfg = dict(cfg.pop('sampler', dict(type='ResumableSampler', shuffle=True)))
    sampler_cfg.setdefault('seed', seed)
    sampler = DATA_SAMPLERS.build(sampler_cfg, default_args=dict(dataset=dataset))
    augment = [TRANSFORMS.build(step) for step in cfg.pop('augment', [])]
    for step in augment:
        if not getattr(step, 'batched', False):
            raise MimbenchError(f'{LOADER_TYPE} augment takes batch transforms (BatchRandomResizedCrop, '
                                f'BatchHorizontalFlip), got {step!r}')
    for key in ('num_workers', 'persistent_workers', 'collate_fn', 'pin_memory'):
        cfg.pop(key, None)      # what a DataLoader would need and this loader does not
    return DeviceBatchLoader(dataset, sampler, augment=augment, **cfg)


# per-sample transform -> its batch counterpart (same arguments)
_BATCH_EQUIVALENT = {'RandomResizedCrop': 'BatchRandomResizedCrop', 'RandomHorizontalFlip': 'BatchHorizontalFlip'}


def to_device_loader(cfg: Config, device: str = 'auto') -> None:
    """Turn ``cfg.train_dataloader`` (a DataLoader over an in-memory dataset with a per-sample pipeline) into a
    :class:`DeviceBatchLoader` with the batch counterparts of its transforms; a transform without one is
    refused, naming it and the ones that convert."""
    loader = dict(cfg.train_dataloader)
    if loader.get('type') == LOADER_TYPE:
        return
    dataset = dict(loader['dataset'])
    augment = []
    for step in dataset.pop('pipeline', None) or []:
        kind = step.get('type') if isinstance(step, dict) else type(step).__name__
        if kind not in _BATCH_EQUIVALENT:
            raise MimbenchError(f'--device-data: the train pipeline step {kind!r} has no batch counterpart; '
                                f'steps that convert: {", ".join(_BATCH_EQUIVALENT)}')
        augment.append(dict(step, type=_BATCH_EQUIVALENT[kind]))
    cfg.train_dataloader = dict(type=LOADER_TYPE, batch_size=loader['batch_size'], device=device,
                                drop_last=loader.get('drop_last', True),
                                sampler=loader.get('sampler', dict(type='ResumableSampler', shuffle=True)),
                                dataset=dataset, augment=augment)
