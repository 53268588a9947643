"""Per-sample augmentations: thin wrappers over ``torchvision.transforms.v2``.

Every transform takes one uint8 image tensor ``[3, H, W]`` and returns a uint8 tensor ``[3, H', W']``; the
maths is torchvision's. The wrappers exist to (a) make the transforms buildable from a config through
``TRANSFORMS``, (b) pick the defaults the MAE/CAE recipes use, and (c) reject bad arguments up front with a
``ValueError`` that names the argument, instead of failing on the first sample inside a DataLoader worker.

Randomness comes from torch's global RNG, which the DataLoader seeds per worker.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Union

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode

from mimbench.registry import TRANSFORMS

Size = Union[int, Sequence[int]]
Transform = Callable[[torch.Tensor], torch.Tensor]

_INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic')


def _check_size(size: Size, name: str = 'size') -> tuple[int, int]:
    """``size`` as ``(h, w)``; an int means a square."""
    if isinstance(size, bool):
        raise ValueError(f'{name} must be a positive int or a pair (h, w), got {size!r}')
    if isinstance(size, int):
        size = (size, size)
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f'{name} must be a positive int or a pair (h, w) of positive ints, got {size!r}')
    return int(size[0]), int(size[1])


def _check_interpolation(interpolation: str) -> InterpolationMode:
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f'interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}')
    return InterpolationMode(interpolation)


def _check_range(value: Sequence[float], name: str, low: float, high: float) -> tuple[float, float]:
    """A pair ``(lo, hi)`` with ``low < lo <= hi <= high``."""
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f'{name} must be a pair (lo, hi), got {value!r}')
    lo, hi = float(value[0]), float(value[1])
    if not (low < lo <= hi <= high):
        raise ValueError(f'{name} must satisfy {low:g} < lo <= hi <= {high:g}, got {tuple(value)!r}')
    return lo, hi


class _Wrapped:
    """Calls a torchvision v2 transform on one uint8 ``[3, H, W]`` tensor; subclasses set ``self.t``."""

    t: Transform

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.t(img)

    def __repr__(self) -> str:
        return repr(self.t)  # torchvision's repr already names the transform and its arguments


@TRANSFORMS.register_module()
class RandomResizedCrop(_Wrapped):
    """Crop a random area fraction ``scale`` with aspect ratio in ``ratio``, resized to ``size``.

    ``[3, H, W]`` -> ``[3, h, w]`` with ``(h, w) = size``. The defaults are MAE's pretraining crop: scale
    (0.2, 1.0) rather than torchvision's (0.08, 1.0), bicubic interpolation, antialiased downscaling.
    """

    def __init__(self, size: Size, scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), interpolation: str = 'bicubic') -> None:
        self.size = _check_size(size)
        self.scale = _check_range(scale, 'scale', 0.0, 1.0)
        self.ratio = _check_range(ratio, 'ratio', 0.0, math.inf)
        self.t = v2.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio,
                                      interpolation=_check_interpolation(interpolation), antialias=True)


@TRANSFORMS.register_module()
class RandomCrop(_Wrapped):
    """Crop a random ``size`` window (after optional zero ``padding`` on every side): fixed size, no rescale.

    ``[3, H, W]`` -> ``[3, h, w]``. ``padding`` is an int (all sides) or torchvision's 2-/4-sequence. An image
    smaller than ``size`` (after padding) raises, unless ``pad_if_needed``.
    """

    def __init__(self, size: Size, padding: int | Sequence[int] | None = None,
                 pad_if_needed: bool = False) -> None:
        self.size = _check_size(size)
        if padding is not None:
            pads = [padding] if isinstance(padding, int) else list(padding)
            if (len(pads) not in (1, 2, 4)
                    or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pads)):
                raise ValueError(f'padding must be None, a non-negative int or 2/4 non-negative ints, '
                                 f'got {padding!r}')
        self.padding = padding
        self.t = v2.RandomCrop(self.size, padding=padding, pad_if_needed=pad_if_needed)


@TRANSFORMS.register_module()
class CenterCrop(_Wrapped):
    """Crop the central ``size`` window: ``[3, H, W]`` -> ``[3, h, w]`` (zero-padded if the image is smaller)."""

    def __init__(self, size: Size) -> None:
        self.size = _check_size(size)
        self.t = v2.CenterCrop(self.size)


@TRANSFORMS.register_module()
class Resize(_Wrapped):
    """Resize, antialiased: ``[3, H, W]`` -> ``[3, h, w]``.

    An int ``size`` sets the *shorter* side and keeps the aspect ratio (torchvision's convention, so
    ``Resize(s)`` + ``CenterCrop(s)`` is the usual evaluation pipeline); a pair ``(h, w)`` is exact.
    """

    def __init__(self, size: Size, interpolation: str = 'bicubic') -> None:
        _check_size(size)
        self.size = size if isinstance(size, int) else tuple(size)
        self.t = v2.Resize(size if isinstance(size, int) else list(size),
                           interpolation=_check_interpolation(interpolation), antialias=True)


@TRANSFORMS.register_module()
class RandomHorizontalFlip(_Wrapped):
    """Mirror left-right with probability ``p``: ``[3, H, W]`` -> ``[3, H, W]``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f'p must be in [0, 1], got {p!r}')
        self.p = float(p)
        self.t = v2.RandomHorizontalFlip(p=self.p)


@TRANSFORMS.register_module()
class ColorJitter(_Wrapped):
    """Randomly jitter brightness, contrast, saturation (factors in ``[1 - x, 1 + x]``) and hue (``[-h, h]``).

    ``[3, H, W]`` uint8 -> same shape, uint8. A factor of 0 disables that jitter.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1) -> None:
        for name, value in (('brightness', brightness), ('contrast', contrast), ('saturation', saturation)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f'{name} must be a non-negative number, got {value!r}')
        if not isinstance(hue, (int, float)) or not 0 <= hue <= 0.5:
            raise ValueError(f'hue must be in [0, 0.5], got {hue!r}')
        self.t = v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)


class Compose:
    """Apply ``transforms`` in order; an empty list is the identity (the ablation's "no augmentation")."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            img = t(img)
        return img

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ', '.join(repr(t) for t in self.transforms)
        return f'Compose([{inner}])'


def build_pipeline(cfgs: Sequence[dict | Transform] | None) -> Compose:
    """Build a per-sample pipeline from config dicts (built through ``TRANSFORMS``) and/or callables.

    Returns a callable uint8 ``[3, H, W]`` -> uint8 ``[3, H', W']``; ``None`` or ``[]`` give the identity.
    """
    if cfgs is None:
        return Compose([])
    if isinstance(cfgs, Compose):
        return cfgs
    if isinstance(cfgs, dict) or callable(cfgs):
        raise TypeError(f'pipeline must be a list of transform configs/callables, got {type(cfgs).__name__}; '
                        f'wrap a single transform in a list')
    transforms = []
    for i, cfg in enumerate(cfgs):
        if isinstance(cfg, dict):
            transforms.append(TRANSFORMS.build(cfg))
        elif callable(cfg):
            transforms.append(cfg)
        else:
            raise TypeError(f'pipeline[{i}] must be a dict config or a callable, got {cfg!r}')
    return Compose(transforms)
