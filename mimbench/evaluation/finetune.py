"""End-to-end fine-tuning (the MAE recipe), and from-scratch training with the very same code.

Recipe: AdamW with layer-wise lr decay, drop path, RandAugment, random erasing, mixup/cutmix with label
smoothing, linear warmup then cosine, global average pooling + LayerNorm before the linear head (see
:class:`Classifier` for the two poolings: the authors' skips the encoder's final norm). The
from-scratch baseline passes a randomly initialized encoder and changes nothing else.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from timm.optim import param_groups_layer_decay
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mimbench.data import build_pipeline
from mimbench.engine.precision import bfloat16_products
from mimbench.evaluation.features import image_batches
from mimbench.evaluation.optim import scaled_lr, set_lr, warmup_cosine

FINETUNE_POOLS = ('mean', 'mean_pre_norm', 'cls')     # features.POOLS are the probes'


class Classifier(nn.Module):
    """Encoder + pooling + linear head: ``imgs [B, 3, H, W]`` -> logits ``[B, num_classes]``.

    ``pool``:

    - ``'mean_pre_norm'``: the authors' global pool (MAE's ``models_vit.py``, BEiT's and CAE's
      ``use_mean_pooling``): the patch tokens of the last block are averaged *without* the encoder's final
      norm, then a fresh LayerNorm, as MAE and BEiT start it (CAE's checkpoint loader instead copies the
      pretrained final norm into it). The final norm takes no part: its parameters are frozen (on the
      ``encoder`` given, so DDP expects no gradient for them) and keep their pretrained values, and the
      encoder keeps the parameter names and shapes of a pretrained one.
    - ``'mean'``: the patch tokens after the final norm are averaged, then a fresh LayerNorm (one more norm
      than the authors'; the micro recipe's pooling, kept so its stored cells keep their numbers).
    - ``'cls'``: the [cls] token after the final norm.

    The head starts near zero (std 2e-5, as in MAE and CAE) so the first steps do not push large random
    gradients into the encoder.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, pool: str = 'mean'):
        super().__init__()
        if pool not in FINETUNE_POOLS:
            raise ValueError(f"pool must be one of {', '.join(FINETUNE_POOLS)}, got {pool!r}")
        self.encoder = encoder
        self.pool = pool
        dim = encoder.embed_dim
        if pool == 'mean_pre_norm':
            encoder.norm.requires_grad_(False)
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6) if pool != 'cls' else nn.Identity()
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer grouping (see :func:`layer_decay_groups`). The encoder's final norm, where it takes part
        (``'mean'``, ``'cls'``), is in the head's layer, where MAE's layer decay puts it (timm's own ViT
        matcher puts it with the last block), and so is a shared
        relative position bias, where BEiT's layer decay puts a shared one (``get_num_layer_for_vit``; BEiT's
        fine-tuning itself copies it into each block by default, docs/fidelity.md)."""
        return dict(stem=r'^encoder\.(?:cls_token|mask_token|pos_embed|patch_embed)',
                    blocks=r'^encoder\.blocks\.(\d+)', head=r'^encoder\.(?:norm|rel_pos_bias)|^fc_norm|^head')

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(imgs, final_norm=False) if self.pool == 'mean_pre_norm' else self.encoder(imgs)
        x = tokens[:, 0] if self.pool == 'cls' else tokens[:, 1:].mean(dim=1)
        return self.head(self.fc_norm(x))


def layer_decay_groups(model: Classifier, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups with layer-wise lr decay, from timm's ``param_groups_layer_decay``.

    Layers by :meth:`Classifier.group_matcher`: patch embedding and tokens are layer 0, block i layer
    ``i + 1``, the final norm, fc_norm and head layer ``depth + 1`` (the final norm in no group under
    ``pool='mean_pre_norm'``, which freezes it); a group's ``lr_scale`` is
    ``layer_decay ** (depth + 1 - layer)``, so the head trains at the full lr and early layers, which hold the
    most general features, move least. 1-D parameters (biases, norms) and the encoder's
    ``no_weight_decay()`` tokens get no weight decay.
    """
    no_decay = [f'encoder.{name}' for name in model.encoder.no_weight_decay()]
    return param_groups_layer_decay(model, weight_decay=weight_decay, no_weight_decay_list=no_decay,
                                    layer_decay=layer_decay)


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
    with torch.inference_mode(), autocast, bfloat16_products(device.type, enabled=amp):
        for imgs, labels in image_batches(dataset, batch_size, num_workers):
            logits = model(preprocessor.normalize(imgs.to(device, non_blocking=True)))
            correct += (logits.argmax(1).cpu() == labels).sum().item()
            total += labels.shape[0]
    return 100.0 * correct / total


class FinetuneModel(BaseModel):
    """A :class:`Classifier` and the recipe's batch-level steps as an mmengine model, so fine-tuning trains
    under the same runner as pretraining (AMP, DDP, checkpoints, resume).

    ``train_step`` on ``{'inputs': uint8 [B, 3, H, W], 'label': [B]}``: the encoder's preprocessor normalizes
    (on the model's device), then random erasing (per image, after normalization, per-pixel noise: timm's
    'pixel' mode as in MAE), mixup/cutmix (one of them with probability ``mixup_prob``, cutmix with
    ``mixup_switch_prob``; soft targets with label smoothing) and cross-entropy. ``forward(imgs)`` gives logits.
    """

    def __init__(self, classifier: Classifier, preprocessor: nn.Module, num_classes: int, *, label_smoothing: float,
                 mixup: float, cutmix: float, mixup_prob: float, mixup_switch_prob: float, random_erasing: float):
        super().__init__(data_preprocessor=preprocessor)
        self.classifier = classifier
        self.mixer = (Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=mixup_prob, switch_prob=mixup_switch_prob,
                            label_smoothing=label_smoothing, num_classes=num_classes)
                      if mixup > 0 or cutmix > 0 else None)
        # Mixup returns smoothed soft targets; without it, smoothing is cross-entropy's own option.
        self.criterion = (SoftTargetCrossEntropy() if self.mixer
                          else nn.CrossEntropyLoss(label_smoothing=label_smoothing))
        self.eraser = RandomErasing(random_erasing, mode='pixel', device='cpu') if random_erasing > 0 else None

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode != 'loss':
            return self.classifier(inputs)
        x, target = inputs, data_samples
        if self.eraser is not None:
            self.eraser.device = x.device      # its noise is drawn where the batch is
            x = self.eraser(x)
        if self.mixer is not None:
            x, target = self.mixer(x, target)
        loss = self.criterion(self.classifier(x), target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'fine-tuning loss became {loss.item()}: lower the lr')
        return {'loss': loss}


class _WarmupCosine(Hook):
    """Sets each group's lr to ``lr * lr_scale * warmup_cosine(iteration)`` before every step: a function of
    the iteration alone, so a resumed run continues the schedule exactly."""

    priority = 'VERY_HIGH'

    def __init__(self, lr: float, warmup_epochs: float):
        self.lr, self.warmup_epochs = lr, warmup_epochs

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        loop = runner.train_loop
        warmup = round(self.warmup_epochs * loop.iters_per_epoch)
        set_lr(runner.optim_wrapper.optimizer, self.lr * warmup_cosine(runner.iter, loop.schedule_iters, warmup))


class _Progress(Hook):
    """One line through ``log`` every ``interval`` iterations and at the end: loss, lr, images/s, ETA."""

    def __init__(self, log: Callable[[str], None], interval: int, batch_size: int):
        self.log, self.interval, self.batch_size = log, interval, batch_size
        self.losses: list[float] = []
        self.start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.losses.append(float(torch.as_tensor(outputs['loss']).detach()))
        step, stop, loop = runner.iter + 1, runner.max_iters, runner.train_loop
        if step % self.interval and step != stop:
            return
        now = time.perf_counter()
        rate = len(self.losses) * self.batch_size / (now - self.start)
        # the epoch of the iteration just finished (step counts finished iterations)
        self.log(f'  epoch {(step - 1) // loop.iters_per_epoch + 1}/{math.ceil(stop / loop.iters_per_epoch)}  '
                 f'iter {step}/{stop}  loss {sum(self.losses) / len(self.losses):.4f}  '
                 f'lr {runner.optim_wrapper.optimizer.param_groups[-1]["lr"]:.3g}  {rate:.0f} img/s  '
                 f'eta {(stop - step) * self.batch_size / rate / 60:.1f} min')
        self.losses, self.start = [], now


def finetune(encoder: nn.Module, preprocessor: nn.Module, train_set: Dataset, test_set: Dataset,
             num_classes: int, *, epochs: float, batch_size: int, base_lr: float, layer_decay: float,
             weight_decay: float = 0.05, betas: Sequence[float] = (0.9, 0.999), warmup_epochs: float = 0,
             pool: str = 'mean', label_smoothing: float = 0.1, mixup: float = 0.0, cutmix: float = 0.0,
             mixup_prob: float = 1.0, mixup_switch_prob: float = 0.5, random_erasing: float = 0.0,
             clip_grad: float | None = None, amp: bool = False, num_workers: int = 0, eval_batch_size: int = 500,
             seed: int = 0, max_iters: int | None = None, log_interval: int = 50,
             device: torch.device | str = 'cpu', work_dir: str | None = None, checkpoint_interval: int = 500,
             launcher: str = 'none', identity: str | None = None,
             log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune ``encoder`` end to end on ``train_set`` (whose pipeline augments) and test on ``test_set``.

    Trains under :class:`~mimbench.engine.mim_runner.MIMRunner` with :class:`~mimbench.engine.loop.MIMTrainLoop`,
    as pretraining does: every iteration reseeded from (seed, iteration), bfloat16 autocast with ``amp``
    (:class:`~mimbench.engine.optim.AutocastOptimWrapper`), DDP under ``launcher='pytorch'``, a checkpoint
    every ``checkpoint_interval`` iterations in ``work_dir``, and a run killed there resumes from it when
    called again with the same ``work_dir`` (without one, a temporary directory: nothing to resume). The
    recipe (every argument that changes the result, and ``identity``: the encoder's weights) is kept in
    ``work_dir/finetune_run.json``; a ``work_dir`` holding a run of another recipe is refused, not resumed.

    Args:
        encoder: pretrained (or, for the scratch baseline, randomly initialized) ViT, built with the wanted
            drop-path rate; it is trained in place.
        epochs: schedule length (fractional allowed); ``max_iters`` stops earlier without changing it.
        base_lr: AdamW lr per 256 images; ``layer_decay``: see :func:`layer_decay_groups`; the lr warms up
            linearly for ``warmup_epochs``, then follows a cosine to zero.
        mixup, cutmix, random_erasing, label_smoothing: see :class:`FinetuneModel`.
        amp: bfloat16 autocast.
        device: where the model trains; batches are augmented per sample on the CPU (the dataset's
            pipeline) and moved there.
    """
    from mmengine.config import Config

    from mimbench.engine.dist import prepare_distributed
    from mimbench.engine.mim_runner import MIMRunner
    from mimbench.engine.optim import AutocastOptimWrapper
    # Mixup draws from numpy and `random`, drop path and erasing from torch: seed all three (the loop
    # reseeds them every iteration; this seeds the head's initialization).
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    device = torch.device(device)
    model = FinetuneModel(Classifier(encoder, num_classes, pool), preprocessor, num_classes,
                          label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix, mixup_prob=mixup_prob,
                          mixup_switch_prob=mixup_switch_prob, random_erasing=random_erasing).to(device)
    if len(train_set) < batch_size:
        raise ValueError(f'the training set ({len(train_set)} images) is smaller than one batch ({batch_size})')
    lr = scaled_lr(base_lr, batch_size)
    opt = torch.optim.AdamW(layer_decay_groups(model.classifier, layer_decay, weight_decay), lr=lr,
                            betas=tuple(betas))
    wrapper_args = dict(clip_grad=dict(max_norm=clip_grad)) if clip_grad else {}
    optim_wrapper = AutocastOptimWrapper(opt, **wrapper_args) if amp else OptimWrapper(opt, **wrapper_args)
    temp = tempfile.TemporaryDirectory(prefix='mimbench_finetune_') if work_dir is None else None
    run_dir = Path(work_dir or temp.name)
    # the recipe's settings: the record's hparams, and (with what the run reads) what a resumed run must match
    settings = dict(epochs=epochs, batch_size=batch_size, base_lr=base_lr, layer_decay=layer_decay,
                    weight_decay=weight_decay, betas=list(betas), warmup_epochs=warmup_epochs, pool=pool,
                    label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix, mixup_prob=mixup_prob,
                    mixup_switch_prob=mixup_switch_prob, random_erasing=random_erasing, clip_grad=clip_grad, amp=amp,
                    drop_path_rate=_drop_path_rate(encoder))
    recipe = dict(settings, identity=identity, seed=seed, num_classes=num_classes, train_images=len(train_set),
                  pipeline=repr(getattr(train_set, 'pipeline', None)))
    resume = _check_resumable(run_dir, recipe) if work_dir is not None else False
    # the process group and the model wrapper for this device, as pretraining's build_runner prepares them
    dist_cfg = Config(dict(launcher=launcher, env_cfg=dict(cudnn_benchmark=False,
                                                           mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))))
    prepare_distributed(dist_cfg)
    hooks = [_WarmupCosine(lr, warmup_epochs)]
    if log is not None:
        hooks.append(_Progress(log, log_interval, batch_size))
    try:
        runner = MIMRunner(
            model=model, work_dir=str(run_dir), experiment_name='finetune',
            train_dataloader=dict(dataset=train_set, batch_size=batch_size, num_workers=num_workers,
                                  persistent_workers=num_workers > 0, drop_last=True,
                                  sampler=dict(type='ResumableSampler', shuffle=True),
                                  collate_fn=dict(type='default_collate')),
            train_cfg=dict(type='MIMTrainLoop', max_epochs=epochs, stop_iter=max_iters),
            optim_wrapper=optim_wrapper, custom_hooks=hooks, default_scope='mimbench',
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=checkpoint_interval,
                                               max_keep_ckpts=1, save_last=True),
                               logger=dict(type='LoggerHook', interval=log_interval), sampler_seed=None,
                               param_scheduler=None),
            log_processor=dict(by_epoch=False), randomness=dict(seed=seed), launcher=launcher,
            resume=resume, log_level='WARNING', env_cfg=dist_cfg.env_cfg.to_dict(),
            cfg=Config(dict(model_wrapper_cfg=dist_cfg.model_wrapper_cfg)) if 'model_wrapper_cfg' in dist_cfg else None)
        start = time.perf_counter()
        runner.train()
        train_seconds = time.perf_counter() - start
        loop = runner.train_loop
        top1 = evaluate_classifier(model.classifier, model.data_preprocessor, test_set, eval_batch_size,
                                   num_workers, amp)      # every rank tests the whole set: the same number
    finally:
        if temp is not None:
            temp.cleanup()
    if log is not None:
        log(f'  trained {runner.iter} iterations in {train_seconds / 60:.1f} min; test top-1 {top1:.2f}%')
    hparams = dict(settings, iters=runner.iter, schedule_iters=loop.schedule_iters, lr=lr)
    return FinetuneResult(top1, model.classifier, [], train_seconds, hparams)


def _check_resumable(run_dir: Path, recipe: dict) -> bool:
    """Whether ``run_dir`` holds a checkpoint of this very recipe to resume; records the recipe for a new run.
    Raises :class:`~mimbench.errors.MimbenchError` naming what differs when it holds another recipe's run."""
    from mimbench.errors import MimbenchError
    from mimbench.fileio import read_json, write_json_atomic
    path = run_dir / 'finetune_run.json'
    stored = read_json(path)
    recipe = json.loads(json.dumps(recipe, default=str))
    if stored is not None and (run_dir / 'last_checkpoint').is_file():
        differ = sorted(k for k in recipe.keys() | stored.keys() if recipe.get(k) != stored.get(k))
        if differ:
            changes = ', '.join(f'{k} {stored.get(k)!r} -> {recipe.get(k)!r}' for k in differ)
            raise MimbenchError(f'{run_dir} holds a fine-tuning run of another recipe ({changes}): remove it, or '
                                f'write the record elsewhere (--out)')
        return True
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, recipe)
    return False


def _drop_path_rate(encoder: nn.Module) -> float:
    """The last block's drop probability, which is the configured rate (it rises linearly to it)."""
    drop = getattr(encoder.blocks[-1], 'drop_path1', None)
    return float(getattr(drop, 'drop_prob', 0.0))
