"""From a config file and command-line choices to a ready mmengine Runner."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for tools)
from mmengine.utils import import_modules_from_strings

import mimbench  # noqa: F401  (registers every component)
from mimbench.config_files import read_config
from mimbench.engine.dist import prepare_distributed
from mimbench.engine.mim_runner import MIMRunner
from mimbench.errors import MimbenchError
from mimbench.machine import DTYPES, dtype_name, resolve_dtype
from mimbench.overrides import apply_overrides
from mimbench.paths import configs_dir, resolve_config
from mimbench.registry import DATA_SAMPLERS, DATASETS, HOOKS, LOOPS, MODELS, check_type

# The dataloaders whose dataset ``--data-root`` redirects.
DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_config(path: str, cfg_options: dict | None = None, log=print) -> Config:
    """Read a config file (``_base_`` inheritance resolved) and apply ``--cfg-options`` style overrides.
    ``path`` may also name a shipped config (``mae_micro_cifar10``, ``configs/mae_micro_cifar10.py`` from any
    folder; :func:`mimbench.paths.resolve_config`).

    An override that nothing would read (a misspelled key) raises :class:`~mimbench.overrides.UnknownKeyError`
    naming the closest valid key, before anything runs; one that swaps a part's ``type`` drops the old
    arguments the new type does not take, with a ``note:`` line through ``log`` (see
    :func:`mimbench.overrides.apply_overrides`).
    """
    path = resolve_config(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist (give a path, or a name of a config in '
                                f'{configs_dir()}, e.g. mae_micro_cifar10)')
    cfg = read_config(path)
    if cfg_options:
        options = dict(cfg_options)
        imports = {k: options.pop(k) for k in list(options) if k.split('.')[0] == 'custom_imports'}
        if imports:  # fromfile imported the file's own; an override may add more, whose types it may name
            apply_overrides(cfg, imports, log=log)
            try:
                import_modules_from_strings(**cfg.custom_imports)
            except ImportError as err:
                raise MimbenchError(f'custom_imports: {err}') from None
        apply_overrides(cfg, options, log=log)
    return cfg


def set_data_root(cfg: Config, root: str) -> None:
    """Point every dataloader's dataset at ``root`` (the dataset decides which layout it finds there)."""
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if loader and 'dataset' in loader:
            loader.dataset.root = root


def apply_cli(cfg: Config, config_path: str, work_dir: str | None = None, data_root: str | None = None,
              resume: str | None = None, launcher: str = 'none', amp: bool = False, seed: int | None = None,
              max_iters: int | None = None, tensorboard: bool = False, precision: str | None = None,
              device_data: bool = False,
              log=print) -> Config:
    """Apply the ``tools/train.py`` options to ``cfg`` in place and return it.

    resume: None (start fresh), 'auto' (latest checkpoint in the work dir, fresh start if there is none) or a
        checkpoint path.
    amp: the same as ``precision='bfloat16'``.
    precision: 'float32', 'bfloat16' (autocast) or 'auto' (bfloat16 where the device computes it natively,
        float32 elsewhere; one line through ``log`` says which and why); None keeps the config's.
    max_iters: stop after this many iterations, keeping the configured schedule.
    device_data: keep the training set on the device and augment whole batches there
        (:func:`mimbench.data.device.to_device_loader`); another data path, so another cell.
    """
    cfg.work_dir = work_dir or cfg.get('work_dir') or str(Path('work_dirs') / Path(config_path).stem)
    if data_root:
        set_data_root(cfg, data_root)
    if device_data:
        from mimbench.data.device import to_device_loader
        to_device_loader(cfg)
    if resume == 'auto':
        cfg.resume = True
    elif resume:
        cfg.resume, cfg.load_from = True, resume
    cfg.launcher = launcher
    if amp:
        precision = 'bfloat16'
    if precision is not None:
        set_precision(cfg, precision, log=log)
    if seed is not None:   # not cfg.setdefault: it returns a copy of what it stores, and the seed would be lost
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    if max_iters is not None:
        if max_iters <= 0:      # here, as a user error: the loop would refuse it with a traceback
            raise MimbenchError(f'--max-iters must be > 0, got {max_iters}')
        cfg.train_cfg.stop_iter = max_iters
    if tensorboard:
        add_tensorboard(cfg)
    finalize_dataloaders(cfg)
    return cfg


def set_precision(cfg: Config, precision: str, log=print) -> str:
    """Make ``cfg`` train in ``precision`` ('float32', 'bfloat16' or 'auto', see :func:`apply_cli`); returns
    the precision it resolved to. bfloat16 is ``AutocastOptimWrapper`` around the config's optimizer settings."""
    if precision not in DTYPES:
        raise MimbenchError(f"--precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    if precision == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        precision = dtype_name(resolve_dtype('auto', device))
        why = ('it computes bfloat16 natively' if precision == 'bfloat16' else
               'it has no native bfloat16 units: bfloat16 would run as float32 products, a little slower')
        log(f'precision auto: {precision} on this {device.upper()} ({why})')
    if precision == 'bfloat16':
        cfg.optim_wrapper.type = 'AutocastOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    elif cfg.optim_wrapper.get('type') == 'AutocastOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('dtype', None)
        cfg.optim_wrapper.pop('attention', None)
    return precision


def add_tensorboard(cfg: Config) -> None:
    """Log to TensorBoard as well as to the work dir's files (mmengine's default visualizer, or the config's).

    Fails here, before any work, when the ``tensorboard`` package is missing: mmengine would import it only at
    the first logged value.
    """
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise MimbenchError('--tensorboard needs the tensorboard package: pip install tensorboard') from None
    # built whole and assigned: cfg.setdefault hands back a plain dict, not what it stored (a ConfigDict copy)
    visualizer = dict(cfg.get('visualizer') or dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]))
    backends = list(visualizer.get('vis_backends') or [])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    cfg.visualizer = dict(visualizer, vis_backends=backends)


def finalize_dataloaders(cfg: Config) -> None:
    """Settings torch refuses in combination, made consistent: no persistent workers without workers (torch
    raises for ``num_workers=0, persistent_workers=True``, e.g. after ``--cfg-options ...num_workers=0``)."""
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if loader and not loader.get('num_workers') and loader.get('persistent_workers'):
            loader.persistent_workers = False


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


def build_runner(cfg: Config) -> MIMRunner:
    """Prepare the process group for the device at hand and build the Runner from ``cfg`` (a
    :class:`~mimbench.engine.mim_runner.MIMRunner`: it locks the work dir until ``train`` returns)."""
    check_config_types(cfg)
    prepare_distributed(cfg)
    return MIMRunner.from_cfg(cfg)
