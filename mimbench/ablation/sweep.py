"""Run a list of cells: one after another, in N local worker processes, or as cluster jobs via submitit.

Whatever the launcher, a cell is :func:`~mimbench.ablation.execute.run_cell`, which skips what is already done;
so rerunning a sweep (after a crash, or with more seeds) continues it. Progress is printed as cells done /
total with an ETA from the cells finished so far (or from the dry-run estimate before the first finishes).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal
from multiprocessing import get_context
from pathlib import Path

from mimbench.ablation.cells import Cell, Scale, find_record
from mimbench.ablation.execute import CellBusy, CellFailed, missing_evaluations, run_cell
from mimbench.ablation.store import ResultStore

Log = Callable[[str], None]
LAUNCHERS = ('local', 'slurm', 'submitit-local')


@dataclass
class SweepSpec:
    """Everything a worker needs to run cells (picklable, for worker processes and cluster jobs)."""
    scale: str
    store: str
    work_root: str
    evaluations: list[str]
    data_root: str | None = None


@dataclass
class Outcome:
    """How one cell's attempt ended: ``'done'`` (``record`` holds its record), ``'busy'`` (another sweep holds
    its lock; not a failure, and says nothing about speed) or ``'failed'`` (``message`` says why)."""
    cell: Cell
    status: Literal['done', 'busy', 'failed']
    seconds: float
    record: dict | None = None
    message: str = ''


def attempt(spec: SweepSpec, cell: Cell, stream: bool = False, log: Log = print) -> Outcome:
    """Run ``cell``, turning every way it can end into an :class:`Outcome` (so a worker or cluster job returns
    instead of raising, and the other cells go on)."""
    start = time.perf_counter()
    try:
        record = run_cell(cell, Scale.load(spec.scale), ResultStore(spec.store), spec.work_root,
                          spec.evaluations, data_root=spec.data_root, stream=stream, log=log)
        return Outcome(cell, 'done', time.perf_counter() - start, record)
    except CellBusy as err:
        return Outcome(cell, 'busy', time.perf_counter() - start, message=f'skipped, {err}')
    except CellFailed as err:
        return Outcome(cell, 'failed', time.perf_counter() - start, message=str(err))
    except Exception as err:   # noqa: BLE001 - e.g. a config that no longer builds: report it, go on
        return Outcome(cell, 'failed', time.perf_counter() - start,
                       message=f'{cell.name}: {type(err).__name__}: {err}')


def _done(store: ResultStore, scale: Scale, cell: Cell, evaluations: list[str]) -> bool:
    return not missing_evaluations(find_record(store, cell), scale, evaluations)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


class Progress:
    """``[done/total]`` lines with an ETA: mean time of the cells this run finished x cells left / workers."""

    def __init__(self, total: int, already: int, workers: int = 1, estimate_s: float | None = None,
                 log: Log = print):
        self.total, self.done, self.workers, self.estimate_s, self.log = total, already, workers, estimate_s, log
        self.durations: list[float] = []

    def eta(self) -> float | None:
        """Seconds until every cell is done, or None before any estimate exists."""
        left = self.total - self.done
        per_cell = sum(self.durations) / len(self.durations) if self.durations else self.estimate_s
        return None if per_cell is None else per_cell * left / self.workers

    def finished(self, outcome: Outcome) -> None:
        self.done += 1
        if outcome.status != 'busy':
            self.durations.append(outcome.seconds)
        eta = self.eta()
        what = {'busy': outcome.message, 'failed': f'FAILED: {outcome.message}'}.get(outcome.status) or ', '.join(
            f'{k} {v["accuracy"]:.2f}' for k, v in (outcome.record or {}).get('metrics', {}).items())
        self.log(f'[{self.done}/{self.total}] {outcome.cell.name} ({format_duration(outcome.seconds)}): {what}'
                 + (f'; ETA {format_duration(eta)}' if eta is not None and self.done < self.total else ''))


def _worker_init(threads: int, devices) -> None:
    # one GPU per worker when there are GPUs; otherwise an equal share of the CPU cores
    if devices is not None:
        os.environ['CUDA_VISIBLE_DEVICES'] = str(devices.get())
    os.environ['OMP_NUM_THREADS'] = str(threads)
    import torch
    torch.set_num_threads(threads)


def _attempt_quietly(spec: SweepSpec, cell: Cell) -> Outcome:
    # in a worker or a cluster job, the cell's own log is its work dir's; the parent prints the outcome
    return attempt(spec, cell, stream=False, log=lambda msg: None)


def run_sweep(cells: list[Cell], spec: SweepSpec, *, workers: int = 1, launcher: str = 'local',
              estimate_s: float | None = None, slurm: dict | None = None, log: Log = print) -> list[dict]:
    """Run every unfinished cell; returns the records of the cells that finished (now or before)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    store = ResultStore(spec.store)
    scale = Scale.load(spec.scale)
    todo = [c for c in cells if not _done(store, scale, c, spec.evaluations)]
    parallel = workers if launcher == 'local' else max(1, len(todo))     # cluster jobs all run at once
    progress = Progress(len(cells), len(cells) - len(todo), parallel, estimate_s, log)
    eta = progress.eta()
    log(f'{len(cells)} cells: {len(cells) - len(todo)} already in {spec.store}, {len(todo)} to run'
        + (f' ({workers} workers)' if workers > 1 and launcher == 'local' else '')
        + (f'; estimated {format_duration(eta)}' if eta and todo else ''))
    if launcher != 'local':
        outcomes = _run_submitit(todo, spec, launcher, slurm or {}, progress, log)
    elif workers <= 1:
        outcomes = []
        for cell in todo:
            log(f'cell {cell.name} [{cell.key}]')
            outcomes.append(attempt(spec, cell, stream=True, log=log))
            progress.finished(outcomes[-1])
    else:
        outcomes = _run_pool(todo, spec, workers, progress)
    failures = [o.message for o in outcomes if o.status == 'failed']
    if failures:
        log(f'{len(failures)} cells failed; rerun the same command to retry them:\n  ' + '\n  '.join(failures))
    return [r for c in cells if (r := find_record(store, c)) is not None]


def _run_pool(todo: list[Cell], spec: SweepSpec, workers: int, progress: Progress) -> list[Outcome]:
    import torch
    ctx = get_context('spawn')
    gpus = torch.cuda.device_count()
    with contextlib.ExitStack() as stack:
        devices = None
        if gpus:
            devices = stack.enter_context(ctx.Manager()).Queue()
            for i in range(min(workers, gpus)):
                devices.put(i)
            workers = min(workers, gpus)
        threads = max(1, (os.cpu_count() or 1) // workers)
        return _pool_loop(todo, spec, workers, progress, ctx, threads, devices)


def _pool_loop(todo, spec, workers, progress, ctx, threads, devices) -> list[Outcome]:
    outcomes = []
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads, devices)) as pool:
        pending = {pool.submit(_attempt_quietly, spec, cell): (cell, time.perf_counter()) for cell in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                cell, start = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as err:   # the worker process itself died (out of memory, killed)
                    outcome = Outcome(cell, 'failed', time.perf_counter() - start,
                                      message=f'{cell.name}: worker died: {type(err).__name__}: {err}')
                outcomes.append(outcome)
                progress.finished(outcome)
    return outcomes


def _run_submitit(todo: list[Cell], spec: SweepSpec, launcher: str, slurm: dict, progress: Progress,
                  log: Log) -> list[Outcome]:
    try:
        import submitit
    except ImportError:
        raise SystemExit("--launcher slurm needs submitit: pip install submitit") from None
    folder = Path(spec.work_root) / 'submitit' / '%j'
    if launcher == 'slurm':
        executor = submitit.AutoExecutor(folder=folder, cluster='slurm')
        executor.update_parameters(**{k: v for k, v in slurm.items() if v is not None})
    else:   # the same code path on this machine: each cell a local job
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=slurm.get('timeout_min', 60 * 24))
    jobs = {}
    for cell in todo:
        job = executor.submit(_attempt_quietly, spec, cell)
        jobs[job] = (cell, time.perf_counter())
        log(f'submitted {cell.name} as job {job.job_id}')
    outcomes = []
    while jobs:
        for job in [j for j in jobs if j.done()]:
            cell, start = jobs.pop(job)
            try:
                outcome = job.result()
            except Exception as err:   # the job itself died (node failure, timeout): say so, keep going
                outcome = Outcome(cell, 'failed', time.perf_counter() - start,
                                  message=f'job {job.job_id} for {cell.name}: {err}')
            outcomes.append(outcome)
            progress.finished(outcome)
        if jobs:
            time.sleep(2.0)
    return outcomes
