"""Optimizers, the learning-rate schedule and the thread setting the evaluation protocols share.

The papers state learning rates for a batch of 256 (``lr = base_lr * batch / 256``) and schedules in epochs
with a linear warmup then a cosine decay to zero, stepped every iteration.
"""
from __future__ import annotations

import contextlib
import math
import os
import time

import torch
from timm.optim import Lars
from torch import nn

from mimbench.registry import OPTIMIZERS

# timm's LARS (the update of the MAE/MoCo-v3 linear probe: SGD whose step is rescaled per parameter tensor by
# trust_coeff * |w| / |g|). Registered so that a config can say type='LARS'.
if OPTIMIZERS.get('LARS') is None:
    OPTIMIZERS.register_module(name='LARS', module=Lars)


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule: ``base_lr`` is stated for a batch of 256."""
    return base_lr * batch_size / 256


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor at ``step``: linear from ~0 to 1 over ``warmup_steps``, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr`` times its ``lr_scale`` (1 unless layer-wise decay set one)."""
    for group in optimizer.param_groups:
        group['lr'] = lr * group.get('lr_scale', 1.0)


def build_probe_optimizer(cfg: dict, module: nn.Module, lr: float) -> torch.optim.Optimizer:
    """An optimizer for a probe head from ``cfg`` (``type`` 'LARS' or 'SGD' or any registered optimizer).

    Biases and other 1-D parameters get no weight decay and, under LARS, no trust-ratio rescaling: the
    MAE/MoCo-v3 LARS adapts matrices only (a bias's norm says nothing about a good step size for it).
    """
    cfg = dict(cfg)
    matrices = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
    vectors = [p for p in module.parameters() if p.requires_grad and p.ndim <= 1]
    if cfg['type'] == 'LARS':
        # always_adapt: rescale matrices even at weight_decay 0 (the linear probe's setting); timm otherwise
        # adapts only decayed groups.
        groups = [dict(params=matrices, always_adapt=True),
                  dict(params=vectors, always_adapt=False, weight_decay=0.0)]
    else:
        groups = [dict(params=matrices), dict(params=vectors, weight_decay=0.0)]
    groups = [g for g in groups if g['params']]
    return OPTIMIZERS.build(dict(cfg, params=groups, lr=lr))


@contextlib.contextmanager
def torch_threads(num: int | str | None):
    """Run the block with ``num`` intra-op threads, restoring the previous count after.

    None leaves the count alone (every core); ``'auto'`` means every core unless other jobs keep half a core
    or more busy right now (:func:`busy_cores`), then one.

    Why it matters on a small machine: when another process occupies a core, every parallel operation waits for
    a descheduled thread. Measured on 2 cores beside one busy training process: a linear-probe epoch takes
    0.1 s on one thread and 1.6-3 s on two; fine-tuning runs at 60 img/s on one thread and 20 on two. And a
    probe's operations (a 1024 x 192 batch through one linear layer) are too small to gain from threads even
    on an idle machine.
    """
    previous = torch.get_num_threads()
    if num == 'auto':
        busy = busy_cores()
        num = 1 if busy is not None and busy >= 0.5 else None
    if num:
        torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def busy_cores(interval: float = 0.3) -> float | None:
    """Cores kept busy by whatever runs now, from two reads of ``/proc/stat`` ``interval`` seconds apart
    (None where there is no ``/proc/stat``). Called before a protocol starts, so it measures other jobs."""
    def read() -> tuple[int, int]:
        with open('/proc/stat') as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)   # idle + iowait
        return sum(values[:8]) - idle, sum(values[:8])
    try:
        busy0, total0 = read()
        time.sleep(interval)
        busy1, total1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)


def busy_note(threads: int | str | None, key: str = 'threads') -> str | None:
    """A hint when other jobs already keep a core busy and the protocol would use every core, else None."""
    if threads in (1, 'auto') or (os.cpu_count() or 1) == 1:
        return None
    busy = busy_cores()
    if busy is None or busy < 0.7:
        return None
    return (f'note: other jobs keep {busy:.1f} of {os.cpu_count()} cores busy; while they run, '
            f'--cfg-options {key}=1 is usually several times faster')
