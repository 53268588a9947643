"""End-to-end fine-tuning (the MAE recipe), and from-scratch training with the very same code.

Recipe: AdamW with layer-wise lr decay, drop path, RandAugment, random erasing, mixup/cutmix with label
smoothing, linear warmup then cosine, global average pooling + LayerNorm before the linear head. The
from-scratch baseline passes a randomly initialized encoder and changes nothing else.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from mimbench.data import build_pipeline
from mimbench.evaluation.features import image_batches
from mimbench.evaluation.optim import scaled_lr, set_lr, warmup_cosine

# Parameters that are embeddings rather than weights: no weight decay (nor for any 1-D parameter).
NO_DECAY = ('cls_token', 'mask_token', 'pos_embed')


class Classifier(nn.Module):
    """Encoder + pooling + linear head: ``imgs [B, 3, H, W]`` -> logits ``[B, num_classes]``.

    ``pool='mean'`` averages the patch tokens and applies a fresh LayerNorm (MAE's fine-tuning default);
    ``'cls'`` takes the [cls] token. The encoder is kept whole (its final norm included), so a fine-tuned
    encoder has the same parameters as a pretrained one and exports the same way. The head starts near zero
    (std 2e-5, as in MAE) so the first steps do not push large random gradients into the encoder.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, pool: str = 'mean'):
        super().__init__()
        if pool not in ('mean', 'cls'):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        self.encoder = encoder
        self.pool = pool
        dim = encoder.embed_dim
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6) if pool == 'mean' else nn.Identity()
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(imgs)                                       # [B, 1 + L, D]
        x = tokens[:, 1:].mean(dim=1) if self.pool == 'mean' else tokens[:, 0]
        return self.head(self.fc_norm(x))


def layer_id(name: str, depth: int) -> int:
    """Depth index of a :class:`Classifier` parameter for layer-wise lr decay.

    Patch embedding and the cls/[M] tokens are layer 0, ``encoder.blocks.i`` is layer ``i + 1``, and
    everything after the blocks (final norm, fc_norm, head) is layer ``depth + 1``.
    """
    if name.startswith('encoder.'):
        rest = name[len('encoder.'):]
        if rest.startswith(('patch_embed.',) + NO_DECAY):
            return 0
        if rest.startswith('blocks.'):
            return int(rest.split('.')[1]) + 1
    return depth + 1


def layer_decay_groups(model: nn.Module, depth: int, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups with ``lr_scale = layer_decay ** (depth + 1 - layer_id)``.

    So the head trains at the full lr, block i at ``layer_decay ** (depth - i)`` of it and the patch
    embedding at ``layer_decay ** (depth + 1)``: early layers, which hold the most general features, move
    least. Biases, norms and embedding tokens get no weight decay.
    """
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lid = layer_id(name, depth)
        decay = not (param.ndim <= 1 or name.split('.')[-1] in NO_DECAY)
        group = groups.setdefault((lid, decay), dict(
            params=[], names=[], layer_id=lid, lr_scale=layer_decay ** (depth + 1 - lid),
            weight_decay=weight_decay if decay else 0.0))
        group['params'].append(param)
        group['names'].append(name)
    return [groups[key] for key in sorted(groups)]


def rand_augment(num_ops: int = 2, magnitude: float = 9) -> v2.RandAugment:
    """torchvision's RandAugment on uint8 images, with ``magnitude`` on timm's 0-10 scale ('rand-m9' = 9).

    torchvision spreads each operation's strength over 31 bins (0 to 30), timm over 0 to 10: timm's m9 is
    bin 27. (timm's 'mstd0.5' magnitude noise and 'inc1' op set are not reproduced.)
    """
    return v2.RandAugment(num_ops=num_ops, magnitude=round(magnitude * 3), num_magnitude_bins=31)


def train_pipeline(steps: Sequence[dict], rand_aug: dict | None) -> list:
    """Per-sample uint8 augmentation: the configured ``TRANSFORMS`` steps, then RandAugment."""
    pipeline = list(build_pipeline(list(steps)).transforms)
    if rand_aug:
        pipeline.append(rand_augment(**rand_aug))
    return pipeline


@dataclass
class FinetuneResult:
    accuracy: float
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    hparams: dict = field(default_factory=dict)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, preprocessor: nn.Module, dataset: Dataset, batch_size: int = 500,
                        num_workers: int = 0, amp: bool = False) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode on ``dataset`` (its own, non-random pipeline), on the
    device the model is on."""
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for imgs, labels in image_batches(dataset, batch_size, num_workers):
            logits = model(preprocessor.normalize(imgs.to(device, non_blocking=True)))
            correct += (logits.argmax(1).cpu() == labels).sum().item()
            total += labels.shape[0]
    return 100.0 * correct / total


def finetune(encoder: nn.Module, preprocessor: nn.Module, train_set: Dataset, test_set: Dataset,
             num_classes: int, *, epochs: float, batch_size: int, base_lr: float, layer_decay: float,
             weight_decay: float = 0.05, betas: Sequence[float] = (0.9, 0.999), warmup_epochs: float = 0,
             pool: str = 'mean', label_smoothing: float = 0.1, mixup: float = 0.0, cutmix: float = 0.0,
             mixup_prob: float = 1.0, mixup_switch_prob: float = 0.5, random_erasing: float = 0.0,
             clip_grad: float | None = None, amp: bool = False, num_workers: int = 0, eval_batch_size: int = 500,
             seed: int = 0, max_iters: int | None = None, log_interval: int = 50,
             device: torch.device | str = 'cpu', log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune ``encoder`` end to end on ``train_set`` (whose pipeline augments) and test on ``test_set``.

    Args:
        encoder: pretrained (or, for the scratch baseline, randomly initialized) ViT, built with the wanted
            drop-path rate; it is trained in place.
        epochs: schedule length (fractional allowed); ``max_iters`` stops earlier without changing it.
        base_lr: AdamW lr per 256 images; ``layer_decay``: see :func:`layer_decay_groups`.
        mixup, cutmix: Beta-distribution alphas (0 disables); one of them is applied to a batch with
            probability ``mixup_prob``, cutmix with probability ``mixup_switch_prob``.
        random_erasing: probability of erasing a random rectangle (per image, after normalization, filled
            with per-pixel noise: timm's 'pixel' mode as in MAE).
        amp: bfloat16 autocast.
        device: where the model trains; batches are augmented per sample on the CPU (the dataset's pipeline)
            and then moved there, with mixup, erasing and normalization done on the device.
    """
    # Mixup draws from numpy and `random`, drop path and erasing from torch: seed all three.
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    depth = len(encoder.blocks)
    device = torch.device(device)
    model = Classifier(encoder, num_classes, pool).to(device)
    preprocessor = preprocessor.to(device)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=gen,
                        num_workers=num_workers, persistent_workers=num_workers > 0)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f'the training set ({len(train_set)} images) is smaller than one batch ({batch_size})')
    total = max(1, round(epochs * steps_per_epoch))
    stop = min(total, max_iters or total)
    warmup = round(warmup_epochs * steps_per_epoch)
    lr = scaled_lr(base_lr, batch_size)
    opt = torch.optim.AdamW(layer_decay_groups(model, depth, layer_decay, weight_decay), lr=lr,
                            betas=tuple(betas))
    mixer = (Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=mixup_prob, switch_prob=mixup_switch_prob,
                   label_smoothing=label_smoothing, num_classes=num_classes)
             if mixup > 0 or cutmix > 0 else None)
    # Mixup returns smoothed soft targets; without it, smoothing is cross-entropy's own option.
    criterion = SoftTargetCrossEntropy() if mixer else nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    eraser = RandomErasing(random_erasing, mode='pixel', device=device.type) if random_erasing > 0 else None
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext

    history: list[dict] = []
    start = time.perf_counter()
    step = 0
    while step < stop:
        epoch = step // steps_per_epoch
        model.train()
        window_loss, window_n, window_start = 0.0, 0, time.perf_counter()
        for imgs, labels in ((b['inputs'], torch.as_tensor(b['label'])) for b in loader):
            if step >= stop:
                break
            imgs, labels = imgs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            x = preprocessor.normalize(imgs)
            if eraser is not None:
                x = eraser(x)
            target = labels
            if mixer is not None:
                x, target = mixer(x, labels)
            set_lr(opt, lr * warmup_cosine(step, total, warmup))
            with autocast():
                loss = criterion(model(x), target)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f'fine-tuning loss became {loss.item()} at iteration {step}: '
                                         'lower the lr')
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            opt.step()
            step += 1
            window_loss += loss.item()
            window_n += 1
            if log is not None and (step % log_interval == 0 or step == stop):
                now = time.perf_counter()
                rate = window_n * batch_size / (now - window_start)
                eta = (stop - step) * batch_size / rate
                log(f'  epoch {epoch + 1}/{math.ceil(stop / steps_per_epoch)}  iter {step}/{stop}  '
                    f'loss {window_loss / window_n:.4f}  lr {lr * warmup_cosine(step - 1, total, warmup):.3g}  '
                    f'{rate:.0f} img/s  eta {eta / 60:.1f} min')
                history.append(dict(iter=step, loss=window_loss / window_n))
                window_loss, window_n, window_start = 0.0, 0, now
    train_seconds = time.perf_counter() - start
    top1 = evaluate_classifier(model, preprocessor, test_set, eval_batch_size, num_workers, amp)
    if log is not None:
        log(f'  trained {step} iterations in {train_seconds / 60:.1f} min; test top-1 {top1:.2f}%')
    hparams = dict(epochs=epochs, iters=step, schedule_iters=total, batch_size=batch_size, base_lr=base_lr, lr=lr,
                   layer_decay=layer_decay, weight_decay=weight_decay, betas=list(betas),
                   warmup_epochs=warmup_epochs, pool=pool, label_smoothing=label_smoothing, mixup=mixup,
                   cutmix=cutmix, mixup_prob=mixup_prob, mixup_switch_prob=mixup_switch_prob,
                   random_erasing=random_erasing, clip_grad=clip_grad, amp=amp,
                   drop_path_rate=_drop_path_rate(encoder))
    return FinetuneResult(top1, model, history, time.perf_counter() - start, hparams)


def _drop_path_rate(encoder: nn.Module) -> float:
    """The last block's drop probability, which is the configured rate (it rises linearly to it)."""
    drop = getattr(encoder.blocks[-1], 'drop_path1', None)
    return float(getattr(drop, 'drop_prob', 0.0))
