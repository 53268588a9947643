"""Checkpoint loading that works on torch >= 2.6.

mmengine 0.10.7 loads local checkpoints with a bare ``torch.load``; since torch 2.6 that defaults to
``weights_only=True``, which refuses the message hub, optimizer and scheduler state mmengine stores, so
``--resume`` fails with an unpickling error. We replace mmengine's loader for local paths (the '' prefix) with
one that unpickles fully. Full unpickling runs code from the file: load only checkpoints you trust (your own).
"""
from __future__ import annotations

import os

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """``torch.load`` with full unpickling and a clear error for a missing file."""
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    return torch.load(filename, map_location=map_location, weights_only=False)


def install_checkpoint_loader() -> None:
    """Make mmengine's ``CheckpointLoader`` use :func:`load_local_checkpoint` for local files."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)


install_checkpoint_loader()
