"""Frozen-encoder features, extracted once per (weights, dataset split, pooling) and cached on disk.

Probes and kNN only ever see these tensors, so sweeping their hyperparameters costs no encoder passes, and the
encoder cannot change: it runs under ``torch.inference_mode`` with every parameter's ``requires_grad`` off.

Poolings of the encoder output ``[B, 1 + L, D]``:
  * ``'cls'``: the [cls] token, ``[B, D]`` (the MAE linear-probe recipe);
  * ``'mean'``: the mean of the L patch tokens, ``[B, D]``;
  * ``'tokens'``: all L patch tokens, ``[B, L, D]`` in float16 (the attentive probe's input; float16 halves
    50,000 x 64 x 192 tokens to 1.2 GB).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mimbench.data import InMemoryImages
from mimbench.engine.precision import bfloat16_products
from mimbench.fileio import atomic_path
from mimbench.machine import dtype_name, resolve_dtype

POOLS = ('cls', 'mean', 'tokens')
# Bump when what a cached file holds changes (pooling, dtype, layout): old files then never match.
FEATURES_VERSION = 1


@dataclass
class Features:
    """``features [N, D]`` (or ``[N, L, D]`` for tokens) and ``labels [N]`` int64 of one dataset split."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def pool_tokens(out: torch.Tensor, pool: str) -> torch.Tensor:
    """Encoder output ``[B, 1 + L, D]`` -> ``[B, D]`` ('cls', 'mean') or ``[B, L, D]`` float16 ('tokens')."""
    if pool == 'cls':
        return out[:, 0].float()
    if pool == 'mean':
        return out[:, 1:].float().mean(dim=1)
    if pool == 'tokens':
        return out[:, 1:].to(torch.float16)
    raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")


def image_batches(dataset: Dataset, batch_size: int, num_workers: int = 0
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(uint8 [B, 3, H, W], labels [B])`` in dataset order.

    An in-memory dataset without a pipeline is sliced directly: collating 60,000 single images costs more than
    the slicing, and there is nothing to augment.
    """
    if isinstance(dataset, InMemoryImages) and len(dataset.pipeline) == 0:
        for start in range(0, len(dataset), batch_size):
            yield dataset.images[start:start + batch_size], dataset.labels[start:start + batch_size]
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in loader:
        yield batch['inputs'], torch.as_tensor(batch['label'])


def freeze(encoder: nn.Module) -> nn.Module:
    """Eval mode (no drop path) and no gradients, for every parameter."""
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder


@contextlib.contextmanager
def explicit_attention(model: nn.Module, enabled: bool = True):
    """Make timm attention layers compute ``softmax(q k^T) v`` with plain matmuls inside the block.

    At CIFAR's 65 tokens that is 10-15% faster on CPU than PyTorch's fused (flash) kernel, in float32 and
    bfloat16 alike (measured on the micro encoder); the result is the same up to rounding. On GPUs the fused
    kernel wins, so callers enable this on CPU only.
    """
    layers = [m for m in model.modules() if hasattr(m, 'fused_attn')] if enabled else []
    saved = [m.fused_attn for m in layers]
    for m in layers:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, value in zip(layers, saved):
            m.fused_attn = value


def extract_features(encoder: nn.Module, preprocessor: nn.Module, dataset: Dataset,
                     pools: Sequence[str] = ('cls',), batch_size: int = 500, dtype: str = 'float32',
                     num_workers: int = 0, log: Callable[[str], None] | None = None) -> dict[str, Features]:
    """Run the frozen encoder once over ``dataset`` and return one :class:`Features` per pooling.

    Args:
        pools: any of :data:`POOLS`; all are computed from the same forward pass.
        batch_size: images per forward pass; large batches keep the matrix multiplies efficient.
        dtype: 'float32', or 'bfloat16' to run a bfloat16 copy of the encoder: about twice as fast on CPUs
            with bf16 units (AVX512-BF16, AMX) and on GPUs, slower on CPUs without them; the features
            then carry bfloat16 rounding (~0.4%). 'auto' picks by the device (:func:`resolve_dtype`).
            A copy rather than autocast: autocast would re-cast every weight on every call and run the
            norms and GELUs in float32, which cost as much as the bf16 matmuls saved.
    """
    for pool in pools:
        pool_tokens(torch.zeros(1, 2, 4), pool)  # validates the name before any work
    freeze(encoder)
    device = next(encoder.parameters()).device
    run_dtype = resolve_dtype(dtype, device)
    preprocessor = preprocessor.to(device)
    model = copy.deepcopy(encoder).to(run_dtype) if run_dtype != torch.float32 else encoder
    outputs: dict[str, list[torch.Tensor]] = {pool: [] for pool in pools}
    labels, done, n = [], 0, len(dataset)
    start = last_log = time.perf_counter()
    with torch.inference_mode(), explicit_attention(model, device.type == 'cpu'), \
            bfloat16_products(device.type, enabled=run_dtype == torch.bfloat16):
        for imgs, lab in image_batches(dataset, batch_size, num_workers):
            out = model(preprocessor.normalize(imgs.to(device)).to(run_dtype))    # [B, 1 + L, D]
            for pool in pools:
                outputs[pool].append(pool_tokens(out, pool).cpu())
            labels.append(lab.to(torch.int64))
            done += imgs.shape[0]
            now = time.perf_counter()
            if log is not None and now - last_log > 10 and done < n:
                log(f'  features: {done}/{n} images, {done / (now - start):.0f} img/s')
                last_log = now
    labels = torch.cat(labels)
    return {pool: Features(torch.cat(outputs[pool]), labels) for pool in pools}


def dataset_fingerprint(dataset: Dataset) -> dict:
    """What identifies a dataset's content for the cache: type, size, where it came from, its pipeline."""
    info = {'type': type(dataset).__name__, 'len': len(dataset),
            'pipeline': repr(getattr(dataset, 'pipeline', None))}
    for attr in ('source', 'split', 'folder'):
        if hasattr(dataset, attr):
            info[attr] = str(getattr(dataset, attr))
    if getattr(dataset, 'image_size', None) is not None:     # a folder resized while decoding: other pixels
        info['image_size'] = str(dataset.image_size)
    if isinstance(dataset, InMemoryImages) and not any(k in info for k in ('source', 'folder')):
        # No file to point at (synthetic or user-built tensors): fingerprint a sample of the pixels.
        info['pixels'] = hashlib.sha256(dataset.images[::max(1, len(dataset) // 64)].numpy().tobytes()).hexdigest()
    return info


class FeatureCache:
    """Features on disk under ``root``, one file per (weights, split, pooling, extraction options).

    The file name carries a readable prefix and a hash of everything that determines the features: the
    weights' identity (checkpoint content hash, or config + seed for a random init), the dataset fingerprint,
    the normalization, the pooling, the extraction dtype and :data:`FEATURES_VERSION`. Files are written to a
    temporary name and renamed, so an interrupted run never leaves a truncated cache behind.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, name: str, split: str, pool: str, key: dict) -> Path:
        digest = hashlib.sha256(json.dumps({**key, 'pool': pool, 'version': FEATURES_VERSION},
                                           sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.root / f'{name}_{split}_{pool}_{digest}.pt'

    def load(self, path: Path) -> Features | None:
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location='cpu', weights_only=True)
            return Features(data['features'], data['labels'])
        except Exception:  # noqa: BLE001 -- unreadable cache: recompute rather than fail
            return None

    def save(self, path: Path, feats: Features) -> None:
        with atomic_path(path) as tmp:
            torch.save({'features': feats.features, 'labels': feats.labels}, tmp)


def cached_features(loaded, dataset: Dataset, split: str, pools: Sequence[str], cache: FeatureCache | None,
                    batch_size: int = 500, dtype: str = 'float32', num_workers: int = 0,
                    log: Callable[[str], None] | None = None) -> tuple[dict[str, Features], dict]:
    """Features of ``dataset`` for each of ``pools``, from ``cache`` when present, else extracted and stored.

    ``loaded`` is a :class:`~mimbench.evaluation.encoder.LoadedEncoder`. Returns the features and a report
    ``{'cache_hits': [...], 'extracted': [...], 'seconds': s, 'files': {pool: path}, 'dtype': what ran}``.
    """
    # the dtype that runs, so 'auto' shares files with the name it resolved to
    device = next(loaded.encoder.parameters()).device
    dtype = dtype_name(resolve_dtype(dtype, device))
    key = {'weights': loaded.identity, 'data': dataset_fingerprint(dataset), 'dtype': dtype,
           'mean': loaded.preprocessor.mean.flatten().tolist(), 'std': loaded.preprocessor.std.flatten().tolist()}
    if device.type != 'cpu':   # other kernels, other rounding; CPU files keep the names they always had
        key['device'] = device.type
    report = {'cache_hits': [], 'extracted': [], 'seconds': 0.0, 'files': {}, 'dtype': dtype}
    result: dict[str, Features] = {}
    missing = []
    for pool in pools:
        path = cache.path(loaded.name, split, pool, key) if cache is not None else None
        feats = cache.load(path) if cache is not None else None
        if feats is not None and len(feats) == len(dataset):
            result[pool] = feats
            report['cache_hits'].append(pool)
        else:
            missing.append(pool)
        if path is not None:
            report['files'][pool] = str(path)
    if missing:
        start = time.perf_counter()
        new = extract_features(loaded.encoder, loaded.preprocessor, dataset, missing, batch_size, dtype,
                               num_workers, log)
        report['seconds'] = time.perf_counter() - start
        if log is not None:
            log(f'extracted {"/".join(missing)} features of {len(dataset)} {split} images in '
                f'{report["seconds"]:.1f} s ({len(dataset) / report["seconds"]:.0f} img/s)')
        for pool, feats in new.items():
            if cache is not None:
                cache.save(Path(report['files'][pool]), feats)
            result[pool] = feats
        report['extracted'] = list(missing)
    return result, report
