"""Hooks that add what a researcher watches during pretraining."""
from __future__ import annotations

import time

from mmengine.dist import get_world_size
from mmengine.hooks import Hook

from mimbench.registry import HOOKS


@HOOKS.register_module()
class ThroughputHook(Hook):
    """Log training images per second (all processes together) as ``img_per_s``.

    Measured between consecutive ``after_train_iter`` calls, so it covers data loading, the step and the
    other hooks: the rate a run really achieves. The logger averages it over its window.
    """

    priority = 'NORMAL'

    def __init__(self):
        self._last = None

    def before_train(self, runner) -> None:
        self._last = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        now = time.perf_counter()
        if self._last is not None and data_batch is not None:
            images = len(data_batch['inputs']) * get_world_size()
            runner.message_hub.update_scalar('train/img_per_s', images / max(now - self._last, 1e-9))
        self._last = now
