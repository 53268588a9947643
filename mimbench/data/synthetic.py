"""Tiny deterministic images with learnable structure, for smoke tests and CI (no files, no network)."""
from __future__ import annotations

import math

import torch

from mimbench.data.folder import InMemoryImages, Pipeline
from mimbench.registry import DATASETS


@DATASETS.register_module()
class SyntheticImages(InMemoryImages):
    """``num_images`` uint8 images ``[3, image_size, image_size]`` in ``num_classes`` balanced classes.

    Each class has its own stripe orientation, stripe frequency and pair of colours; each image jitters
    them and adds a random stripe phase, a smooth brightness ramp and mild pixel noise. Smooth, periodic
    content makes a masked patch predictable from its visible neighbours, so a MAE loss drops within a few
    dozen steps, while the class signal gives linear probes something to find.

    The same arguments always give the same tensor (its own ``torch.Generator`` seeded with ``seed``).
    Label of image ``i`` is ``i % num_classes``. Attributes: ``images [N, 3, S, S]`` uint8, ``labels [N]``.
    """

    def __init__(self, num_images: int = 256, image_size: int = 32, num_classes: int = 4, seed: int = 0,
                 pipeline: Pipeline = None) -> None:
        for name, value in (('num_images', num_images), ('image_size', image_size),
                            ('num_classes', num_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        labels = torch.arange(num_images) % num_classes
        images = make_images(labels, image_size, num_classes, seed)
        super().__init__(images, labels, [f'class_{c}' for c in range(num_classes)], pipeline)


def make_images(labels: torch.Tensor, image_size: int, num_classes: int, seed: int) -> torch.Tensor:
    """Images for ``labels [N]`` as uint8 ``[N, 3, image_size, image_size]``; see SyntheticImages."""
    g = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    # Per class: orientation spread over half a turn, 1-3 stripes per image, two random colours.
    class_angle = torch.arange(num_classes) * math.pi / num_classes
    class_freq = 1.0 + (torch.arange(num_classes) % 3).float()
    class_colours = torch.rand(num_classes, 2, 3, generator=g) * 0.8 + 0.1

    # Per image: jitter of the class parameters so no two images are identical.
    angle = class_angle[labels] + (torch.rand(n, generator=g) - 0.5) * 0.3
    phase = torch.rand(n, generator=g) * 2 * math.pi
    colours = (class_colours[labels] + (torch.rand(n, 2, 3, generator=g) - 0.5) * 0.1).clamp(0, 1)

    coords = torch.linspace(0.0, 1.0, image_size)
    yy, xx = torch.meshgrid(coords, coords, indexing='ij')  # [S, S] each
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    along = xx * cos + yy * sin  # [N, S, S]
    across = -xx * sin + yy * cos
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * class_freq[labels][:, None, None] * along + phase[:, None, None])
    ramp = 0.75 + 0.25 * (across - across.amin((1, 2), keepdim=True)) / (
        across.amax((1, 2), keepdim=True) - across.amin((1, 2), keepdim=True) + 1e-6)

    a, b = colours[:, 0, :, None, None], colours[:, 1, :, None, None]  # [N, 3, 1, 1]
    img = (a * (1 - stripes[:, None]) + b * stripes[:, None]) * ramp[:, None]
    img = img + torch.randn(img.shape, generator=g) * 0.02
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)
