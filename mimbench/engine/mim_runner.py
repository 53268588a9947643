"""mmengine's Runner with what pretraining must not get silently wrong: one training run per work dir, no
checkpoint with non-finite weights, and a resume that finds a loadable checkpoint and the same batch size."""
from __future__ import annotations

import contextlib
import os
import uuid
import weakref
from pathlib import Path

import torch
from mmengine.dist import all_reduce, is_main_process
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mimbench.algorithms.base import NonFiniteLossError, NonFiniteWeightsError
from mimbench.engine.checkpoint import check_same_batch, nonfinite_tensors, read_meta, resumable_checkpoint
from mimbench.engine.dist import launch_rank
from mimbench.errors import MimbenchError
from mimbench.fileio import atomic_path
from mimbench.lockfile import LockHeld, hold_lock

# Not the ablation's cell lock (``.lock``): a sweep holds that while it runs tools/train.py in the same work dir.
TRAIN_LOCK = '.train.lock'


class MIMRunner(Runner):
    """An mmengine ``Runner`` (built the same way, e.g. ``MIMRunner.from_cfg(cfg)``) that also:

    * holds ``<work_dir>/.train.lock`` (process of rank 0) from construction until ``train`` returns, so a
      second run in the same work dir fails at once, naming the ``host:pid`` that holds it, instead of both
      writing one log and overwriting each other's checkpoints;
    * writes a checkpoint only when every floating-point weight is finite, and then atomically, recording the
      per-process train batch size and the number of processes in its meta;
    * resumes (``resume=True`` without a file) from the newest checkpoint that loads when the one
      ``last_checkpoint`` names does not, and refuses a checkpoint trained with another batch size;
    * names its logger, visualizer and message hub ``<experiment_name or config stem>_<8 hex>_<timestamp>``.

    ``last_checkpoint`` (attribute): the checkpoint this run saved last, or resumed from; None before either.
    """

    def __init__(self, model, work_dir: str, *args, launcher: str = 'none', experiment_name: str | None = None,
                 **kwargs):
        # mmengine keys those three by name, its default being the config's stem and the second the run started,
        # and hands a run whose name exists the instances of the first: two runs built within one second in one
        # process (a notebook, a sweep, the tests) would log into one file and one scalars.json, the first's.
        cfg = kwargs.get('cfg')
        stem = experiment_name or (Path(cfg.filename).stem if getattr(cfg, 'filename', None) else 'run')
        experiment_name = f'{stem}_{uuid.uuid4().hex[:8]}'
        self._work_lock = contextlib.ExitStack()
        if launch_rank(launcher) == 0:   # one lock per run, not per process; taken before anything is written
            Path(work_dir).mkdir(parents=True, exist_ok=True)
            try:
                self._work_lock.enter_context(hold_lock(Path(work_dir) / TRAIN_LOCK))
            except LockHeld as err:
                raise MimbenchError(f'work dir {work_dir} is in use: the training run {err.holder} holds '
                                    f'{err.path}; wait for it to end or train into another --work-dir') from None
        weakref.finalize(self, self._work_lock.close)   # a runner that never trains still lets go of the lock
        try:
            super().__init__(model, work_dir, *args, launcher=launcher, experiment_name=experiment_name, **kwargs)
        except BaseException:
            self._work_lock.close()
            raise
        self.last_checkpoint: str | None = None

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        """mmengine's, plus the device data path (``type='DeviceBatchLoader'``, :mod:`mimbench.data.device`)."""
        from mimbench.data.device import LOADER_TYPE, build_device_loader
        if isinstance(dataloader, dict) and dataloader.get('type') == LOADER_TYPE:
            return build_device_loader(dataloader, seed=seed)
        return Runner.build_dataloader(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)

    def train(self):
        try:
            return super().train()
        except NonFiniteLossError as err:   # the model cannot know what was saved; the runner does
            err.args = (f'{err.args[0]} {self._saved_note()}',)
            raise
        finally:
            self._work_lock.close()

    def _saved_note(self) -> str:
        if self.last_checkpoint is None:
            return 'This run saved no checkpoint.'
        return f'The last checkpoint saved, {self.last_checkpoint}, holds finite weights.'

    def _batch_meta(self) -> dict:
        return dict(train_batch_size=self.train_dataloader.batch_size, world_size=self.world_size)

    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True, backend_args=None):
        """mmengine's ``save_checkpoint`` (rank 0 writes), refusing non-finite weights
        (:class:`NonFiniteWeightsError` on every rank, so all stop together) and writing through a temporary
        file, so that ``filename`` is a whole checkpoint or absent. Returns None."""
        self._check_finite(filename)
        path = os.path.join(out_dir, filename)
        if is_main_process():
            meta = dict(meta or {}, **self._batch_meta())
            with atomic_path(path) as tmp:
                super().save_checkpoint(str(tmp.parent), tmp.name, file_client_args, save_optimizer,
                                        save_param_scheduler, meta, by_epoch, backend_args)
        self.last_checkpoint = path

    def _check_finite(self, filename: str) -> None:
        model = self.model.module if is_model_wrapper(self.model) else self.model
        bad, total = nonfinite_tensors(model.state_dict())
        count = torch.tensor(float(len(bad)))
        all_reduce(count, op='max')   # DDP keeps the weights equal on every rank; agree all the same
        if count.item() > 0:
            example = f', e.g. {bad[0]}' if bad else ''
            raise NonFiniteWeightsError(
                f'the weights after iteration {self.iter + 1} are not finite ({int(count.item())} of {total} '
                f'tensors hold NaN or inf{example}): {filename} was not written and training stopped. '
                f'{self._saved_note()} A huge but finite loss let a bad step through: lower the learning rate '
                '(optim_wrapper.optimizer.lr) or clip gradients (optim_wrapper.clip_grad=dict(max_norm=1.0)).')

    def load_or_resume(self) -> None:
        """mmengine's, except when resuming: the checkpoint is :func:`resumable_checkpoint` of the work dir
        (or the file given), and one trained with another batch size is refused (:func:`check_same_batch`)."""
        if self._has_loaded or not self._resume:
            return super().load_or_resume()
        if self._load_from is None:
            found = resumable_checkpoint(self.work_dir, log=self.logger.warning)
            if found is None:
                self.logger.info(f'no checkpoint in {self.work_dir}: starting afresh')
                return None
            path, meta = found
        else:   # a file the user named: it loads, or the error says why
            path, meta = self._load_from, read_meta(self._load_from)
        check_same_batch(path, meta, self._batch_meta())
        self.logger.info(f'resuming from {path}')
        self.resume(path)
        self.last_checkpoint = path
        return None
