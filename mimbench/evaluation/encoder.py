"""Rebuild a pretrained encoder (and the image normalization it was trained with) from a checkpoint.

A pretraining checkpoint is an mmengine dict: ``state_dict`` holds the whole algorithm (``encoder.*``,
``decoder.*``, ...) and ``meta['cfg']`` the config text it was trained with. The encoder is rebuilt from that
config's ``model.encoder`` through ``ENCODERS`` and loaded strictly: a checkpoint of another architecture is
refused with the mismatched keys and shapes named, never silently half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.config import Config
from torch import nn

from mimbench.config_files import read_config
from mimbench.engine.checkpoint import POINTER, load_local_checkpoint, pointed_checkpoint
from mimbench.errors import MimbenchError
from mimbench.registry import ENCODERS, MODELS

ENCODER_PREFIX = 'encoder.'
# Encoder weights that only masked pretraining reads: the [M] embedding of BEiT and of MAE's "encoder w/ [M]".
PRETRAINING_ONLY = ('mask_token',)
# At most this many mismatches are listed in an error; the rest are counted.
_MAX_LISTED = 8


class EncoderMismatchError(MimbenchError, ValueError):
    """The checkpoint's encoder weights do not fit the encoder its config describes."""


class CheckpointError(MimbenchError, ValueError):
    """A file that is not a pretraining checkpoint, or one whose config cannot be found."""


@dataclass
class LoadedEncoder:
    """A ready-to-evaluate encoder and where it came from.

    Attributes:
        encoder: the ViT, on CPU, in eval mode.
        preprocessor: the ``ImagePreprocessor`` of the pretraining config (uint8 -> normalized float).
        cfg: the pretraining config.
        checkpoint: resolved checkpoint path, or None for a random initialization.
        checkpoint_sha256: content hash of the checkpoint file (None for a random initialization).
        config_hash: sha256 of the pretraining config's text.
        config_name: the pretraining config's name (its file stem, or the work dir's name).
        seed: the seed of a random initialization (None when loaded from a checkpoint).
        built_by: for a checkpoint loaded under a config given in its place, a hash of the encoder and
            preprocessor that config builds (None under the checkpoint's own config).
    """

    encoder: nn.Module
    preprocessor: nn.Module
    cfg: Config
    checkpoint: str | None
    checkpoint_sha256: str | None
    config_hash: str
    config_name: str
    seed: int | None = None
    built_by: str | None = None

    @property
    def init(self) -> str:
        return 'random' if self.checkpoint is None else 'checkpoint'

    @property
    def identity(self) -> str:
        """What determines the features: the checkpoint's content (and the encoder another config builds
        around it: the same weights under other heads or norms compute other features), or the config and
        seed of a random init."""
        if self.checkpoint_sha256 is not None and self.built_by is not None:
            return hashlib.sha256(f'{self.checkpoint_sha256}:{self.built_by}'.encode()).hexdigest()
        if self.checkpoint_sha256 is not None:
            return self.checkpoint_sha256
        return hashlib.sha256(f'random:{self.config_hash}:{self.seed}'.encode()).hexdigest()

    @property
    def name(self) -> str:
        """Short label for file names: the checkpoint's stem, or ``random-<config>-s<seed>``."""
        if self.checkpoint is not None:
            return Path(self.checkpoint).stem
        return f'random-{self.config_name}-s{self.seed}'


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Content hash of a file, read in 4 MiB chunks (checkpoints can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """A checkpoint file from what a user types.

    Accepts a file, a work directory (its ``last_checkpoint`` pointer, written by mmengine), or
    ``WORK_DIR/latest.pth``, which mmengine never writes but users expect: it means the same pointer.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return str(path)
    work_dir = path if path.is_dir() else path.parent if path.name == 'latest.pth' else None
    if work_dir is not None and (work_dir / POINTER).is_file():
        target = pointed_checkpoint(work_dir)
        if Path(target).is_file():
            return target
        raise FileNotFoundError(f'{work_dir}/{POINTER} points to {target or "nothing"}, which does not exist')
    raise FileNotFoundError(f'checkpoint {path} does not exist (give a .pth file or a work dir with '
                            f'a last_checkpoint file)')


def pretrain_config(checkpoint: str | None, ckpt: dict | None, config: str | None) -> tuple[Config, str]:
    """The config a checkpoint was trained with, and its name: ``config`` if given, else the text in
    ``meta['cfg']``, else the single ``*.py`` in the checkpoint's work directory."""
    if config is not None:
        from mimbench.engine.runner import load_config
        return load_config(config), Path(config).stem
    text = ((ckpt or {}).get('meta') or {}).get('cfg')
    if isinstance(text, str) and text.strip():
        return Config.fromstring(text, file_format='.py'), Path(checkpoint).parent.name
    if checkpoint is not None:
        candidates = sorted(Path(checkpoint).parent.glob('*.py'))
        if len(candidates) == 1:
            return read_config(candidates[0]), candidates[0].stem
    raise CheckpointError(f'cannot tell which config trained {checkpoint}: it has no meta["cfg"] and its '
                          f'directory does not hold exactly one .py config; pass --config')


def build_encoder(cfg: Config, **overrides) -> nn.Module:
    """The encoder that ``cfg.model`` pretrains, with ``overrides`` (e.g. ``drop_path_rate``) applied.

    Always without an [M] embedding: evaluation feeds whole images, so the ``mask_token`` that BEiT or MAE's
    "encoder w/ [M]" trained is never read (:func:`load_encoder` leaves it out of the weights).
    """
    enc_cfg = dict(cfg.model.encoder)
    enc_cfg.update(overrides)
    enc_cfg.pop('use_mask_token', None)
    return ENCODERS.build(enc_cfg, default_args=dict(use_mask_token=False))


def build_preprocessor(cfg: Config) -> nn.Module:
    pre = cfg.model.get('data_preprocessor') or dict(type='ImagePreprocessor')
    return MODELS.build(dict(pre))


def encoder_state(state_dict: dict, for_evaluation: bool = False) -> dict:
    """The ``encoder.*`` entries of an algorithm's state dict, prefix removed (a ``module.`` wrapper too).

    ``for_evaluation`` leaves out the entries only masked pretraining reads (``PRETRAINING_ONLY``).
    """
    out = {}
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith(ENCODER_PREFIX):
            out[key[len(ENCODER_PREFIX):]] = value
    if for_evaluation:
        out = {k: v for k, v in out.items() if k not in PRETRAINING_ONLY}
    return out


def check_encoder_state(encoder: nn.Module, state: dict, checkpoint: str, cfg_desc: str) -> None:
    """Raise :class:`EncoderMismatchError` naming every missing, unexpected or differently shaped key."""
    expected = encoder.state_dict()
    if not state:
        raise EncoderMismatchError(f'checkpoint {checkpoint} holds no {ENCODER_PREFIX}* weights: is it a '
                                   f'pretraining checkpoint of mimbench?')
    shape = [f'{k}: checkpoint {list(state[k].shape)} vs config {list(v.shape)}'
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if not (shape or missing or unexpected):
        return
    parts = []
    for title, items in (('shape mismatches', shape), ('missing from the checkpoint', missing),
                         ('not in the config\'s encoder', unexpected)):
        if items:
            more = f' (and {len(items) - _MAX_LISTED} more)' if len(items) > _MAX_LISTED else ''
            parts.append(f'{title}: ' + '; '.join(items[:_MAX_LISTED]) + more)
    raise EncoderMismatchError(
        f'the encoder in {checkpoint} does not match the config\'s encoder {cfg_desc}: ' + ' | '.join(parts)
        + '. Evaluate it with the config it was trained with (--config).')


def load_encoder(checkpoint: str | os.PathLike | None = None, config: str | None = None, *,
                 seed: int = 0, **overrides) -> LoadedEncoder:
    """Load a pretrained encoder, or build a randomly initialized one.

    Args:
        checkpoint: a checkpoint file or work dir (see :func:`resolve_checkpoint`); None for a random
            initialization of ``config``'s encoder (the "random init" and "from scratch" baselines).
        config: pretraining config file; by default the one stored in the checkpoint.
        seed: seeds the random initialization (ignored when loading weights).
        overrides: encoder arguments to change, e.g. ``drop_path_rate=0.1`` for fine-tuning.
    """
    if checkpoint is None:
        if config is None:
            raise ValueError('give a checkpoint, or a config for a randomly initialized encoder')
        cfg, name = pretrain_config(None, None, config)
        torch.manual_seed(seed)
        encoder = build_encoder(cfg, **overrides)
        return LoadedEncoder(encoder.eval(), build_preprocessor(cfg), cfg, None, None,
                             text_sha256(cfg.pretty_text), name, seed)

    path = resolve_checkpoint(checkpoint)
    ckpt = load_local_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'{path} is not a checkpoint dict (found {type(ckpt).__name__})')
    cfg, name = pretrain_config(path, ckpt, config)
    encoder = build_encoder(cfg, **overrides)
    weights = encoder_state(state, for_evaluation=True)
    check_encoder_state(encoder, weights, path, _describe(cfg.model.encoder))
    encoder.load_state_dict(weights, strict=True)
    built_by = None
    if config is not None:      # another config than the checkpoint's own, unless it builds the same encoder
        try:
            own = _builds(pretrain_config(path, ckpt, None)[0], {})
        except CheckpointError:
            own = None
        built_by = None if _builds(cfg, {}) == own else _builds(cfg, overrides)
    return LoadedEncoder(encoder.eval(), build_preprocessor(cfg), cfg, path, file_sha256(path),
                         text_sha256(cfg.pretty_text), name, built_by=built_by)


def _builds(cfg: Config, overrides: dict) -> str:
    """A hash of the encoder and preprocessor ``cfg`` builds (with ``overrides``)."""
    return text_sha256(json.dumps([cfg.model.encoder, cfg.model.get('data_preprocessor'), overrides],
                                  sort_keys=True, default=str))


def _describe(enc_cfg) -> str:
    return '(' + ', '.join(f'{k}={v}' for k, v in dict(enc_cfg).items()) + ')'


def load_algorithm(checkpoint: str | os.PathLike, config: str | None = None) -> tuple[nn.Module, Config]:
    """The whole pretraining algorithm (encoder, decoder, masker, target...) of a checkpoint, eval mode.

    For pictures of what the model reconstructs; evaluations need only :func:`load_encoder`.
    """
    path = resolve_checkpoint(checkpoint)
    ckpt = load_local_checkpoint(path, map_location='cpu')
    cfg, _ = pretrain_config(path, ckpt, config)
    model = MODELS.build(dict(cfg.model))
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in ckpt['state_dict'].items()}
    check_encoder_state(model.encoder, encoder_state(state), path, _describe(cfg.model.encoder))
    model.load_state_dict(state, strict=True)
    return model.eval(), cfg
