"""Checkpoints that are never half-written, never hold non-finite weights, and load on torch >= 2.6.

Writing: :class:`AtomicCheckpointHook` replaces mmengine's ``CheckpointHook`` under the same name, and
:class:`~mimbench.engine.mim_runner.MIMRunner` writes every checkpoint through a temporary file and refuses
weights that are not finite. Resuming: :func:`resumable_checkpoint` picks the checkpoint ``--resume`` continues
from, falling back past a torn file or an empty pointer; :func:`check_same_batch` refuses a changed batch.

Loading: mmengine 0.10.7 loads local checkpoints with a bare ``torch.load``; since torch 2.6 that defaults to
``weights_only=True``, which refuses the message hub, optimizer and scheduler state mmengine stores, so
``--resume`` fails with an unpickling error. We replace mmengine's loader for local paths (the '' prefix) with
one that unpickles fully. Full unpickling runs code from the file: load only checkpoints you trust (your own).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.runner.checkpoint import CheckpointLoader

from mimbench.errors import MimbenchError
from mimbench.fileio import write_text_atomic
from mimbench.registry import HOOKS

POINTER = 'last_checkpoint'   # mmengine's name for the file that holds the latest checkpoint's path


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


@HOOKS.register_module(name='CheckpointHook')
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same name and arguments: configs do not change) in a crash-safe order.

    The new checkpoint is written first (atomically, by the runner), then ``last_checkpoint`` is replaced
    atomically to name it, and only then is the oldest kept checkpoint deleted. mmengine deletes first and
    rewrites the pointer in place, so a kill at the wrong instant left an empty pointer, or one good checkpoint
    fewer than ``max_keep_ckpts`` promises.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        dropped = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                dropped = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            # before the save: a resumed run reads from the checkpoint which files it keeps
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        write_text_atomic(Path(runner.work_dir) / POINTER, self.last_ckpt)
        if dropped is not None:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(dropped))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)


def nonfinite_tensors(state_dict: dict) -> tuple[list[str], int]:
    """The names of the floating-point tensors of ``state_dict`` holding a NaN or an infinity, and how many
    floating-point tensors it has."""
    floats = {k: v for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()}
    return [k for k, v in floats.items() if not torch.isfinite(v).all()], len(floats)


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict of a checkpoint, reading the whole archive's structure but not its tensor data
    (memory-mapped), so a torn or truncated file raises here, quickly."""
    return torch.load(path, map_location='cpu', weights_only=False, mmap=True)['meta']


def relocated(path: str | os.PathLike, work_dir: str | os.PathLike) -> str:
    """``path``, a checkpoint named by a file of ``work_dir`` (the ``last_checkpoint`` pointer, a run summary),
    found again after the work dir was moved or copied whole.

    mmengine writes absolute paths, so a work dir carried to another checkout or disk names files that are
    gone, or, when it was copied, the original's. Returns the file of that name in ``work_dir`` when there is
    one (a work dir's checkpoints lie in it), else ``path`` (the caller says when it is missing).
    """
    path = Path(path)
    here = Path(work_dir) / path.name
    return str(here) if here.is_file() else str(path)


def pointed_checkpoint(work_dir: str | os.PathLike) -> str:
    """The checkpoint that ``work_dir``'s ``last_checkpoint`` pointer names, :func:`relocated`; '' when the
    pointer is missing or empty."""
    pointer = Path(work_dir) / POINTER
    named = pointer.read_text().strip() if pointer.is_file() else ''
    return relocated(named, work_dir) if named else ''


def _iteration(path: Path) -> int | None:
    """N of a checkpoint file named ``iter_<N>.pth``; None for any other name."""
    m = re.fullmatch(r'iter_(\d+)\.pth', path.name)
    return int(m.group(1)) if m else None


def _iteration_checkpoints(work_dir: Path) -> list[Path]:
    """``iter_<N>.pth`` files of ``work_dir``, newest (highest N) first."""
    found = [(n, p) for p in work_dir.glob('iter_*.pth') if (n := _iteration(p)) is not None]
    return [p for _, p in sorted(found, reverse=True)]


def resume_iteration(work_dir: str | os.PathLike) -> int:
    """The iteration ``--resume`` would continue from in ``work_dir``, by file names alone (cheap enough for
    estimates; :func:`resumable_checkpoint` loads them): the ``iter_<N>.pth`` the ``last_checkpoint`` pointer
    names when it is here, else the newest; 0 when there is none. A torn file found on loading moves it back."""
    named = Path(pointed_checkpoint(work_dir))
    if named.is_file() and (n := _iteration(named)) is not None:
        return n
    newest = _iteration_checkpoints(Path(work_dir))
    return _iteration(newest[0]) if newest else 0


def _why_unreadable(path: str, err: Exception) -> str:
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return 'empty file'
    first_sentence = str(err).split('\n')[0].split('. ')[0]   # torch appends paragraphs of advice
    return f'{type(err).__name__}: {first_sentence}' if first_sentence else type(err).__name__


def resumable_checkpoint(work_dir: str | os.PathLike, log: Callable[[str], None]) -> tuple[str, dict] | None:
    """The checkpoint ``--resume`` continues from in ``work_dir`` and its meta; None when there is none.

    That is the one ``last_checkpoint`` names, when it loads. When the pointer is missing or empty, or its file
    does not load (torn by a crash), it is the newest ``iter_*.pth`` that loads, and one line through ``log``
    says what was skipped, why, and which checkpoint is used. Raises :class:`MimbenchError` when checkpoints
    exist but none loads (starting afresh over them would silently throw the run away).
    """
    work_dir = Path(work_dir)
    pointer = work_dir / POINTER
    named = pointed_checkpoint(work_dir)
    others = [str(p) for p in _iteration_checkpoints(work_dir)
              if not named or os.path.abspath(p) != os.path.abspath(named)]
    skipped = [] if named else [f'{pointer} ({"empty" if pointer.is_file() else "missing"})']
    for path in ([named] if named else []) + others:
        try:
            meta = read_meta(path)
        except Exception as err:   # noqa: BLE001 - whatever makes it unloadable, the next one may load
            skipped.append(f'{path} ({_why_unreadable(path, err)})')
            continue
        if skipped:
            log(f'resume: skipped {"; ".join(skipped)}; resuming from {path}, the newest checkpoint that loads')
        return path, meta
    if not named and not others:
        return None
    raise MimbenchError(f'--resume: no checkpoint in {work_dir} loads ({"; ".join(skipped)}); move them away to '
                        'start afresh')


def check_same_batch(path: str, meta: dict, here: dict) -> None:
    """Refuse (:class:`MimbenchError`) to resume from ``path`` when its ``meta`` records another
    ``train_batch_size`` (per process) or ``world_size`` (processes) than ``here`` has: the iterations per
    epoch, hence the schedule and the position in the epoch's sample order, would silently change. A checkpoint
    that did not record them (older) resumes as before."""
    then = {key: meta.get(key) for key in here}
    if None in then.values() or then == here:
        return
    raise MimbenchError(
        f'cannot resume from {path}: it was trained with batch size {then["train_batch_size"]} per process on '
        f'{then["world_size"]} process(es), this run has {here["train_batch_size"]} on {here["world_size"]}; '
        'another batch changes the iterations per epoch, so the schedule and the samples left in the epoch would '
        f'not match. Resume with train_dataloader.batch_size={then["train_batch_size"]} on {then["world_size"]} '
        'process(es), or train into a new work dir')
