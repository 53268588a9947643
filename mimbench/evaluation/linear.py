"""Linear probing (the MAE recipe): BatchNorm without affine parameters, then one linear layer."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mimbench.evaluation.features import Features
from mimbench.evaluation.probe import ProbeResult, train_probe


class LinearProbeHead(nn.Module):
    """``[B, D]`` features -> ``[B, num_classes]`` logits through ``BatchNorm1d(affine=False)`` + ``Linear``.

    The BatchNorm only whitens the features (no learnable scale or shift): MIM features have very different
    scales per channel, and without it the probe's best lr would depend on the pretraining method. In training
    mode it normalizes with batch statistics and updates its running ones; in eval mode it uses the running
    statistics, so a prediction never depends on the rest of the batch. The linear layer starts small
    (truncated normal, std 0.01) with a zero bias, as in MAE.
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim, affine=False, eps=1e-6)
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(feats.float()))


def linear_probe(train: Features, test: Features, num_classes: int, *, epochs: int = 90,
                 batch_size: int = 1024, base_lr: float = 0.1, warmup_epochs: float = 10,
                 optimizer: dict | None = None, seed: int = 0, threads: int | str | None = 1,
                 device: torch.device | str = 'cpu', log: Callable[[str], None] | None = None) -> ProbeResult:
    """Train a :class:`LinearProbeHead` on ``train`` features ``[N, D]`` and return its ``test`` accuracy.

    Defaults are MAE's (LARS, momentum 0.9, no weight decay, base lr 0.1 per 256, 90 epochs, 10 warmup);
    MAE's batch of 16,384 becomes 1,024 here, with the lr scaled by the batch as the recipe does.
    """
    torch.manual_seed(seed)
    head = LinearProbeHead(train.features.shape[1], num_classes)
    optimizer = optimizer or dict(type='LARS', momentum=0.9, weight_decay=0.0)
    return train_probe(head, train, test, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                       base_lr=base_lr, warmup_epochs=warmup_epochs, seed=seed, threads=threads, device=device,
                       log=log)
