"""Distributed setup that also works without a GPU.

mmengine's 'pytorch' launcher assumes CUDA: it calls ``torch.cuda.set_device`` and wraps the model with
``device_ids=[LOCAL_RANK]``. On CPU we create the gloo process group ourselves before the Runner (which then
skips its own initialization) and wrap without ``device_ids``.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

LAUNCHERS = ('none', 'pytorch', 'slurm')


def prepare_distributed(cfg) -> None:
    """Adjust ``cfg`` (an mmengine Config with ``launcher`` set) for the device this process will use."""
    launcher = cfg.get('launcher', 'none')
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got '{launcher}'")
    cuda = torch.cuda.is_available()
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'nccl' if cuda else 'gloo'
    if launcher == 'none' or cuda:
        return
    if launcher != 'pytorch':
        raise ValueError(f"launcher '{launcher}' needs CUDA; on CPU use --launcher pytorch under torchrun")
    if 'RANK' not in os.environ:
        raise RuntimeError('--launcher pytorch expects to be started by torchrun '
                           '(e.g. torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)


def launch_rank(launcher: str) -> int:
    """This process's rank as its launcher set it, known before any process group exists (0 without one)."""
    if launcher == 'none':
        return 0
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', 0)))


def finish_distributed(wait: bool = True) -> None:
    """Tear the process group down before the interpreter exits: left to exit, a gloo group's threads are
    destroyed while still joinable and a rank can abort ('terminate called without an active exception'),
    failing a run that has finished its work. ``wait``: first wait for every rank (not after a failure, which
    the other ranks may never reach)."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def ends_process_group() -> Iterator[None]:
    """Run the block, then :func:`finish_distributed`: waiting for every rank after success, not after a
    failure (the other ranks may never get there)."""
    try:
        yield
    except BaseException:
        finish_distributed(wait=False)
        raise
    finish_distributed()
