"""Hooks that add what a researcher watches during pretraining."""
from __future__ import annotations

import time
from pathlib import Path

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook

from mimbench.fileio import read_json, write_json_atomic
from mimbench.machine import clock_host, host_info
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


@HOOKS.register_module()
class TrainClockHook(Hook):
    """Keep the training time of a run across resumes in ``<work_dir>/train_clock.json``.

    A resumed run's own timer starts at zero, so the total cost of a run that was killed and resumed is
    otherwise lost. The file holds wall seconds, process CPU seconds (all threads) and the iteration count;
    it is rewritten atomically every ``interval`` iterations and at the end of training. Time spent after
    the last write of a killed segment is not counted; time spent on iterations that a resume repeats is
    (it was spent).

    It also holds ``hosts``: the machine of each stretch of the run (rank 0's :func:`host_info` and the
    ``from_iter`` it took over at), a new entry where a resume lands on another machine. A resumed bf16 run
    may have computed its first iterations with bf16 units and the rest as float32 products, at another
    speed; the machine that finishes a run cannot say that alone. A run resumed from a clock written before
    ``hosts`` existed (or from none) starts the list with ``{'from_iter': 0}``: machine unknown.
    """

    priority = 'VERY_LOW'

    def __init__(self, interval: int = 100, filename: str = 'train_clock.json'):
        self.interval = interval
        self.filename = filename

    def _path(self, runner):
        return Path(runner.work_dir) / self.filename

    def before_train(self, runner) -> None:
        # only a resumed run continues the clock; a fresh run in an old work dir starts at zero
        saved = (read_json(self._path(runner)) or {}) if getattr(runner, '_resume', False) else {}
        self._base_wall = float(saved.get('wall_seconds', 0.0))
        self._base_cpu = float(saved.get('cpu_seconds', 0.0))
        self._segments = int(saved.get('segments', 0)) + 1
        # a run resumed past iteration 0 without a clock of hosts (an older clock, or none) ran there unrecorded
        self._hosts = list(saved.get('hosts') or ([dict(from_iter=0)] if saved or runner.iter else []))
        here = host_info()
        if not self._hosts or clock_host(self._hosts[-1]) != here:
            self._hosts.append(dict(here, from_iter=runner.iter))
        self._start_wall = time.perf_counter()
        self._start_cpu = time.process_time()

    def _write(self, runner) -> None:
        if get_rank() != 0:
            return
        write_json_atomic(self._path(runner), dict(
            wall_seconds=round(self._base_wall + time.perf_counter() - self._start_wall, 2),
            cpu_seconds=round(self._base_cpu + time.process_time() - self._start_cpu, 2),
            iter=runner.iter, segments=self._segments, world_size=get_world_size(), hosts=self._hosts))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self._write(runner)

    def after_train(self, runner) -> None:
        self._write(runner)
