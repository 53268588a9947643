"""Turns a collated uint8 batch into normalized float images on the model's device."""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mimbench.registry import MODELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@MODELS.register_module()
class ImagePreprocessor(BaseDataPreprocessor):
    """``{'inputs': uint8 [B, C, H, W], 'label': [B]}`` -> ``{'inputs': float [B, C, H, W], 'data_samples': [B]}``.

    Moves the batch to the device first and converts there, so on a GPU the host only ships uint8 bytes.
    Normalization: ``(x / 255 - mean) / std`` with mean/std given on the [0, 1] scale.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), False)

    def normalize(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 255] float ``[B, C, H, W]`` -> normalized float32."""
        return (imgs.float() / 255.0 - self.mean) / self.std

    def denormalize(self, imgs: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`, returning [0, 1] floats (for pictures)."""
        return (imgs * self.std + self.mean).clamp(0, 1)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        return {'inputs': self.normalize(data['inputs']), 'data_samples': data.get('label')}
