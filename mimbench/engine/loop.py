"""The training loop: iteration-based, schedule defined in epochs, resumable mid-epoch and reproducible."""
from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.runner.base_loop import BaseLoop

from mimbench.registry import LOOPS


def seed_iteration(base_seed: int, iteration: int, rank: int) -> None:
    """Reseed torch, numpy and ``random`` from (seed, iteration, rank).

    Every random draw of an iteration (masks, in-process augmentation, drop path) then depends on the
    iteration number only, not on how many iterations this process has run: a resumed run draws exactly
    what the uninterrupted run drew, and each rank draws differently.
    """
    state = np.random.SeedSequence([base_seed, iteration, rank]).generate_state(2)
    seed = int(state[0]) << 32 | int(state[1])
    torch.manual_seed(seed)
    np.random.seed(int(state[0]))
    random.seed(seed)


@LOOPS.register_module()
class MIMTrainLoop(BaseLoop):
    """Run ``max_epochs`` (fractional allowed) of optimizer steps, one batch per step.

    Differs from mmengine's ``IterBasedTrainLoop`` in three ways that matter for MIM pretraining:
      * the length is given in epochs (the papers' unit) and converted with the real iterations per epoch;
      * on resume it does not replay the skipped batches: it tells the sampler (``ResumableSampler``) where
        the epoch stopped, which is instant and draws the same remaining samples;
      * every iteration is reseeded from (seed, iteration, rank), so kill-and-resume reproduces the
        uninterrupted run (exactly with ``num_workers=0``; with worker processes the data order is exact but
        augmentation draws differ).

    Args:
        max_epochs: length of the schedule.
        stop_iter: end the run after this many iterations without changing the schedule (``--max-iters``);
            ``runner.max_iters`` reports the stopping point, so ETA and the last checkpoint follow it.
    """

    def __init__(self, runner, dataloader, max_epochs: float, stop_iter: int | None = None):
        super().__init__(runner, dataloader)
        self.iters_per_epoch = len(self.dataloader)
        if self.iters_per_epoch == 0:
            raise ValueError(f'the training set ({len(self.dataloader.dataset)} images) is smaller than one batch '
                             f'({self.dataloader.batch_size} per process): lower train_dataloader.batch_size')
        if max_epochs <= 0:
            raise ValueError(f'max_epochs must be > 0, got {max_epochs}')
        self._max_epochs = max_epochs
        self.schedule_iters = max(1, round(max_epochs * self.iters_per_epoch))
        if stop_iter is not None and stop_iter <= 0:
            raise ValueError(f'stop_iter (--max-iters) must be > 0, got {stop_iter}')
        self._max_iters = min(self.schedule_iters, stop_iter or self.schedule_iters)
        self._iter = 0
        self._epoch = 0
        self.stop_training = False

    @property
    def max_epochs(self) -> float:
        return self._max_epochs

    @property
    def max_iters(self) -> int:
        return self._max_iters

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._iter

    def run(self):
        runner = self.runner
        if self._max_iters < self.schedule_iters:
            print_log(f'stopping at iteration {self._max_iters} of a {self.schedule_iters}-iteration schedule '
                      f'({self.iters_per_epoch} iterations per epoch)', logger='current')
        runner.call_hook('before_train')
        rank = get_rank()
        sampler = self.dataloader.sampler
        while self._iter < self._max_iters and not self.stop_training:
            self._epoch, offset = divmod(self._iter, self.iters_per_epoch)
            runner.call_hook('before_train_epoch')
            # After the hooks: mmengine's DistSamplerSeedHook would otherwise reset the mid-epoch start.
            if hasattr(sampler, 'set_epoch'):
                try:
                    sampler.set_epoch(self._epoch, start=offset * self.dataloader.batch_size)
                except TypeError:  # a plain mmengine sampler: no mid-epoch start
                    sampler.set_epoch(self._epoch)
            batches = iter(self.dataloader)
            for _ in range(offset, self.iters_per_epoch):
                if self._iter >= self._max_iters or self.stop_training:
                    break
                seed_iteration(runner.seed, self._iter, rank)
                self.run_iter(next(batches))
            del batches  # release worker processes before the next epoch starts its own
            runner.call_hook('after_train_epoch')
        runner.call_hook('after_train')
        return runner.model

    def run_iter(self, data_batch: dict) -> None:
        self.runner.model.train()
        self.runner.call_hook('before_train_iter', batch_idx=self._iter, data_batch=data_batch)
        outputs = self.runner.model.train_step(data_batch, optim_wrapper=self.runner.optim_wrapper)
        self.runner.call_hook('after_train_iter', batch_idx=self._iter, data_batch=data_batch, outputs=outputs)
        self._iter += 1
