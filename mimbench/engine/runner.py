"""From a config file and command-line choices to a ready mmengine Runner."""
from __future__ import annotations

import os
from pathlib import Path

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for tools)
from mmengine.runner import Runner
from mmengine.utils import import_modules_from_strings

import mimbench  # noqa: F401  (registers every component)
from mimbench.engine.dist import prepare_distributed
from mimbench.registry import DATA_SAMPLERS, DATASETS, HOOKS, LOOPS, MODELS, check_type

# The dataloaders whose dataset ``--data-root`` redirects.
DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """Read a config file (``_base_`` inheritance resolved) and apply ``--cfg-options`` style overrides."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        if cfg.get('custom_imports'):  # fromfile imported the file's own; an override may add more
            import_modules_from_strings(**cfg.custom_imports)
    return cfg


def set_data_root(cfg: Config, root: str) -> None:
    """Point every dataloader's dataset at ``root`` (the dataset decides which layout it finds there)."""
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if loader and 'dataset' in loader:
            loader.dataset.root = root


def apply_cli(cfg: Config, config_path: str, work_dir: str | None = None, data_root: str | None = None,
              resume: str | None = None, launcher: str = 'none', amp: bool = False, seed: int | None = None,
              max_iters: int | None = None, tensorboard: bool = False) -> Config:
    """Apply the ``tools/train.py`` options to ``cfg`` in place and return it.

    resume: None (start fresh), 'auto' (latest checkpoint in the work dir, fresh start if there is none) or a
        checkpoint path.
    max_iters: stop after this many iterations, keeping the configured schedule.
    """
    cfg.work_dir = work_dir or cfg.get('work_dir') or str(Path('work_dirs') / Path(config_path).stem)
    if data_root:
        set_data_root(cfg, data_root)
    if resume == 'auto':
        cfg.resume = True
    elif resume:
        cfg.resume, cfg.load_from = True, resume
    cfg.launcher = launcher
    if amp:
        cfg.optim_wrapper.type = 'AutocastOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    if seed is not None:
        cfg.setdefault('randomness', {})['seed'] = seed
    if max_iters is not None:
        cfg.train_cfg.stop_iter = max_iters
    if tensorboard:
        backends = cfg.setdefault('visualizer', dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]))
        backends.vis_backends.append(dict(type='TensorboardVisBackend'))
    return cfg


def check_config_types(cfg: Config) -> None:
    """Fail before any work when a ``type`` the Runner will build is unknown, listing the valid names.

    mmengine builds these through its own root registries, whose error does not say what is available.
    """
    check_type(cfg.get('model'), MODELS)
    check_type(cfg.get('train_cfg'), LOOPS)
    for key in DATALOADER_KEYS:
        loader = cfg.get(key) or {}
        check_type(loader.get('dataset'), DATASETS)
        check_type(loader.get('sampler'), DATA_SAMPLERS)
    for hook in list((cfg.get('default_hooks') or {}).values()) + list(cfg.get('custom_hooks') or []):
        check_type(hook, HOOKS)


def build_runner(cfg: Config) -> Runner:
    """Prepare the process group for the device at hand and build the Runner from ``cfg``."""
    check_config_types(cfg)
    prepare_distributed(cfg)
    return Runner.from_cfg(cfg)
