"""Discrete visual tokens as the target: one id per patch from a tokenizer trained offline, cross-entropy."""
from __future__ import annotations

import hashlib
import io
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mimbench.fileio import atomic_path
from mimbench.registry import ENCODERS, TARGETS
from mimbench.targets.base import Target

DEFAULT_CHECKPOINT = 'work_dirs/tokenizer_cifar10/tokenizer.pth'
MAKE_ONE = 'python tools/train_tokenizer.py configs/tokenizer_cifar10.py'
# Which command writes a missing tokenizer: tools/train_tokenizer.py writes work_dirs/<config name>/tokenizer.pth.
_MAKERS = {'tokenizer_cifar10': MAKE_ONE,
           'tokenizer_imagenet': 'python tools/train_tokenizer.py configs/tokenizer_imagenet.py '
                                 '--data-root /data/imagenet'}


def how_to_make(path: str) -> str:
    """The command that writes the tokenizer file ``path``, for error messages."""
    maker = _MAKERS.get(os.path.basename(os.path.dirname(os.path.abspath(path))))
    if maker:
        return f'make it with `{maker}`'
    return (f'make one with `python tools/train_tokenizer.py configs/tokenizer_<dataset>.py` (e.g. `{MAKE_ONE}`, '
            f'which writes {DEFAULT_CHECKPOINT}) or set target.checkpoint to yours')


def save_tokenizer(path: str, tokenizer_cfg: dict, tokenizer: nn.Module, mean: Sequence[float],
                   std: Sequence[float], metrics: dict | None = None) -> str:
    """Write the file :class:`TokenTarget` loads: the tokenizer's config and weights, and the normalization
    (``mean``/``std`` on the [0, 1] scale) of the images it was trained on. Returns the path written.

    Write-once: runs and stored cells that read ``path`` must keep reading the tokenizer they were made with.
    If ``path`` already holds a different tokenizer, the new one goes beside it as
    ``<stem>-<first 16 hex digits of its sha256>.pth`` (the returned path) and ``path`` is left as it was; the
    same content again writes nothing.
    """
    payload = {'config': dict(tokenizer_cfg), 'state_dict': tokenizer.state_dict(), 'mean': list(map(float, mean)),
               'std': list(map(float, std)), 'metrics': dict(metrics or {})}
    buffer = io.BytesIO()   # torch.save names its archive after the file: a temp name would enter the bytes
    torch.save(payload, buffer)
    data = buffer.getvalue()
    stem, suffix = os.path.splitext(path)
    for candidate in (path, f'{stem}-{hashlib.sha256(data).hexdigest()[:16]}{suffix or ".pth"}'):
        if not os.path.isfile(candidate):
            try:
                with atomic_path(candidate, exclusive=True) as tmp:
                    tmp.write_bytes(data)
                return candidate
            except FileExistsError:   # another process published it meanwhile
                pass
        if _same_tokenizer(candidate, payload):
            return candidate
    raise FileExistsError(f'{path} and its content-named twin both exist with other content')


def _same_tokenizer(path: str, payload: dict) -> bool:
    """Whether the file at ``path`` holds the same tokenizer (config, weights, normalization; metrics aside)."""
    old = torch.load(path, map_location='cpu', weights_only=True)
    if any(old.get(k) != payload[k] for k in ('config', 'mean', 'std')):
        return False
    state, new_state = old.get('state_dict', {}), payload['state_dict']
    return state.keys() == new_state.keys() and all(torch.equal(state[k], new_state[k].cpu()) for k in state)


def load_tokenizer(path: str) -> tuple[nn.Module, dict]:
    """Build a frozen tokenizer from a :func:`save_tokenizer` file. Returns ``(tokenizer, checkpoint)``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'tokenizer checkpoint {path} does not exist; {how_to_make(path)}')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    tokenizer = ENCODERS.build(ckpt['config'])
    tokenizer.load_state_dict(ckpt['state_dict'])
    tokenizer.requires_grad_(False)
    return tokenizer.eval(), ckpt


@TARGETS.register_module()
class TokenTarget(Target):
    """Token ids of a frozen tokenizer as the target, cross-entropy on removed patches only.

    Args:
        patch_size: side of a patch p; the tokenizer's ``downsample`` must equal it (one token per patch).
        in_chans: image channels.
        checkpoint: tokenizer file written by ``tools/train_tokenizer.py``.
        vocab_size: when given, must equal the tokenizer's vocabulary (catches a config meant for another
            tokenizer); ``channels`` is the tokenizer's vocabulary either way.
        img_mean, img_std: normalization of the images this target receives (the algorithm's data
            preprocessor, [0, 1] scale); None means the same as the tokenizer was trained with.

    ``channels`` = vocabulary size V, the width of the logits a head must output.
    ``forward(imgs [B, C, H, W])`` -> ids ``[B, L]`` long in [0, V).
    ``loss(pred, imgs, mask[, ids_masked])`` -> scalar: mean cross-entropy of the logits over removed patches
    (:meth:`~mimbench.targets.base.Target.loss`).
    """

    def __init__(self, patch_size: int, in_chans: int = 3, checkpoint: str = DEFAULT_CHECKPOINT,
                 vocab_size: int | None = None, img_mean: Sequence[float] | None = None,
                 img_std: Sequence[float] | None = None):
        super().__init__()
        self.tokenizer, ckpt = load_tokenizer(checkpoint)
        self.channels = self.tokenizer.vocab_size
        if vocab_size is not None and vocab_size != self.channels:
            raise ValueError(f'target vocab_size={vocab_size} but the tokenizer {checkpoint} has a vocabulary of '
                             f'{self.channels}; drop vocab_size or point checkpoint at a matching tokenizer')
        if self.tokenizer.downsample != patch_size:
            raise ValueError(f'tokenizer {checkpoint} makes one token per {self.tokenizer.downsample}x'
                             f'{self.tokenizer.downsample} pixels but the encoder patch_size is {patch_size}: '
                             'train a tokenizer with downsample equal to the patch size')
        if self.tokenizer.in_chans != in_chans:
            raise ValueError(f'tokenizer {checkpoint} takes {self.tokenizer.in_chans} channels, images have '
                             f'{in_chans}')
        tok_mean, tok_std = ckpt['mean'], ckpt['std']
        in_mean, in_std = img_mean or tok_mean, img_std or tok_std
        # x_tok = (x_in * std_in + mean_in - mean_tok) / std_tok, as one affine map per channel.
        scale = torch.tensor(in_std) / torch.tensor(tok_std)
        shift = (torch.tensor(in_mean) - torch.tensor(tok_mean)) / torch.tensor(tok_std)
        self.register_buffer('scale', scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer('shift', shift.view(1, -1, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()   # frozen: the targets must not depend on the training mode
        return self

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        # Full precision: under bf16 autocast the nearest-codeword search would flip near-ties.
        with torch.autocast(device_type=imgs.device.type, enabled=False):
            return self.tokenizer.tokenize(imgs.float() * self.scale + self.shift)

    def per_patch_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits ``pred [B, N, V]`` against code ids ``target [B, N]`` -> ``[B, N]``."""
        return F.cross_entropy(pred.float().flatten(0, 1), target.flatten(), reduction='none').view(target.shape)
