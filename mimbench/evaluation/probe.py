"""Train a classifier head on cached features: the loop the linear and attentive probes share.

The encoder is not here at all: the head sees ``Features`` tensors only, so a probe cannot change the encoder.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mimbench.evaluation.features import Features
from mimbench.evaluation.optim import build_probe_optimizer, scaled_lr, set_lr, torch_threads, warmup_cosine

# Print an epoch line at most this often (plus the first and last epoch): 90 one-second epochs would
# otherwise print 90 lines.
LOG_EVERY_S = 5.0


@dataclass
class ProbeResult:
    """Top-1 accuracy (%) on the evaluation split, the trained head, and per-epoch ``(loss, train acc %)``."""

    accuracy: float
    head: nn.Module
    history: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0
    hparams: dict = field(default_factory=dict)


@torch.no_grad()
def predict(head: nn.Module, feats: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Class predictions ``[N]`` of ``head`` in eval mode (BatchNorm uses its running statistics)."""
    head.eval()
    return torch.cat([head(feats[i:i + batch_size]).argmax(1) for i in range(0, len(feats), batch_size)])


def accuracy(head: nn.Module, data: Features, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (predict(head, data.features, batch_size) == data.labels).float().mean().item()


def train_probe(head: nn.Module, train: Features, test: Features, *, epochs: int, batch_size: int,
                optimizer: dict, base_lr: float, warmup_epochs: float = 0, seed: int = 0,
                threads: int | str | None = 1, device: torch.device | str = 'cpu',
                log: Callable[[str], None] | None = None) -> ProbeResult:
    """Train ``head`` with cross-entropy on ``train`` and report its accuracy on ``test``.

    The lr is ``base_lr * batch_size / 256``, warmed up linearly for ``warmup_epochs`` then cosine-decayed
    to zero, per iteration. Each epoch visits the training set in a fresh random order (a generator seeded
    with ``seed``); the last incomplete batch is dropped so BatchNorm never sees a tiny batch, unless the
    whole set is smaller than one batch. No augmentation: the features are fixed. ``threads``: see
    :func:`torch_threads`. ``device``: where the head trains; the features move there once (the order of
    samples comes from the same CPU generator on every device).
    """
    device = torch.device(device)
    if device.type != 'cpu':
        head = head.to(device)
        train, test = (Features(f.features.to(device), f.labels.to(device)) for f in (train, test))
    with torch_threads(threads):
        result = _train_probe(head, train, test, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                              base_lr=base_lr, warmup_epochs=warmup_epochs, seed=seed, log=log)
        result.hparams.update(threads=threads, threads_used=torch.get_num_threads())
    return result


def take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` for a contiguous ``x [N, ...]``, the same values: each sample is gathered as one flat row of
    8-byte words, which on CPU is much faster than indexing ``[N, 64, 192]`` bfloat16 tokens element by
    element (the attentive probe's largest gather)."""
    if x.dim() < 2 or not x.is_contiguous():
        return x[idx]
    flat = x.reshape(x.shape[0], -1)
    if (flat.shape[1] * x.element_size()) % 8 == 0:
        flat = flat.view(torch.int64)
    return flat.index_select(0, idx).view(x.dtype).view(len(idx), *x.shape[1:])


def _train_probe(head, train, test, *, epochs, batch_size, optimizer, base_lr, warmup_epochs, seed, log):
    n = len(train)
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)
    lr = scaled_lr(base_lr, batch_size)
    opt = build_probe_optimizer(optimizer, head, lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[tuple[float, float]] = []
    start = last_log = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(n, generator=gen)
        loss_sum = correct = seen = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size].to(train.labels.device)
            x, y = take_rows(train.features, idx), train.labels[idx]   # as stored: the head picks its precision
            set_lr(opt, lr * warmup_cosine(step, total, warmup))
            logits = head(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f'probe loss became {loss_sum} in epoch {epoch + 1}: lower the lr, or '
                                     'check the features for NaN/inf')
        history.append((loss_sum / seen, 100.0 * correct / seen))
        now = time.perf_counter()
        if log is not None and (epoch in (0, epochs - 1) or now - last_log >= LOG_EVERY_S):
            log(f'  epoch {epoch + 1}/{epochs}  loss {history[-1][0]:.4f}  train acc {history[-1][1]:.2f}%  '
                f'lr {opt.param_groups[0]["lr"]:.3g}  {now - start:.1f} s')
            last_log = now
    top1 = accuracy(head, test)
    hparams = dict(epochs=epochs, batch_size=batch_size, base_lr=base_lr, lr=lr, warmup_epochs=warmup_epochs,
                   optimizer=dict(optimizer), steps=total)
    return ProbeResult(top1, head, history, time.perf_counter() - start, hparams)
