"""k-nearest-neighbour classification on frozen features: cosine similarity, temperature-weighted votes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mimbench.evaluation.features import Features


@torch.no_grad()
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 20, temperature: float = 0.07, chunk_size: int = 1000
                ) -> torch.Tensor:
    """Predicted labels ``[M]`` for ``test_feats [M, D]`` from ``train_feats [N, D]`` with ``train_labels [N]``.

    Features are L2-normalized, so a dot product is the cosine similarity s. Each test sample's k most similar
    training samples vote for their label with weight ``exp(s / temperature)`` (a low temperature lets the
    closest neighbours dominate); the class with the largest total wins. Test samples are processed
    ``chunk_size`` at a time, so at most ``chunk_size x N`` similarities exist at once (1000 x 50,000 floats
    = 200 MB instead of 2 GB for all 10,000 CIFAR test images).
    """
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    preds = []
    for start in range(0, test_feats.shape[0], chunk_size):
        test = F.normalize(test_feats[start:start + chunk_size].float(), dim=1)
        sims, idx = (test @ train.t()).topk(k, dim=1)                      # [m, k]
        votes = torch.zeros(test.shape[0], num_classes, device=test.device)
        votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(train: Features, test: Features, num_classes: int, k: int = 20, temperature: float = 0.07,
                 chunk_size: int = 1000, device: torch.device | str = 'cpu') -> float:
    """Top-1 accuracy (%) of :func:`knn_predict` on ``test``, computed on ``device``."""
    if train.features.dim() != 2:
        raise ValueError(f'kNN needs pooled features [N, D], got {tuple(train.features.shape)}')
    pred = knn_predict(train.features.to(device), train.labels.to(device), test.features.to(device), num_classes,
                       k, temperature, chunk_size)
    return 100.0 * (pred.cpu() == test.labels).float().mean().item()
