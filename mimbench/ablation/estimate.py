"""``--dry-run``: build every cell's model (so a value that cannot build fails before any training) and
estimate each cell's time from its FLOPs.

The estimate is FLOPs / (device rate x efficiency): the device rate is this machine's measured fp32 matmul
rate on CPU, or the scale config's ``device_tflops`` for an accelerator, and ``efficiency`` the fraction of it
a training step sustains (scale config; docs/performance.md has the measured fractions). Probe times are the
measured ones in the scale config (they barely depend on the model at a given width).

That FLOP estimate assumes an idle machine. ``measured_rate`` gives a second one from what the store's recent
cells on this host actually achieved, in whatever way they were run (here: two cells at a time, one thread
each: mask ratio 40% took 47 CPU-minutes to pretrain where the idle estimate said 18, docs/ablation.md).
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

import torch

from mimbench.ablation.axes import AblationError
from mimbench.ablation.cells import Cell, Scale, missing_weight_files, readable_copy, record_config, repo_path
from mimbench.ablation.store import pretrain_hosts
from mimbench.analysis import algorithm_flops, count_flops, matmul_gflops
from mimbench.machine import clock_host, host_info
from mimbench.registry import ENCODERS, MODELS


@dataclass
class CellEstimate:
    cell: Cell
    train_gflops: float         # per image, one pretraining step (forward + backward)
    encoder_gflops: float       # per image, the encoder over all patches (feature extraction, fine-tuning)
    pretrain_gflop: float       # the whole pretraining run (0 for a cell that does not pretrain)
    pretrain_s: float
    eval_s: float

    @property
    def total_s(self) -> float:
        return self.pretrain_s + self.eval_s


def device_gflops(scale: Scale) -> tuple[float, str]:
    """Sustained GFLOP/s assumed for the scale and a phrase saying where the figure comes from."""
    eff = scale.cfg.get('efficiency', 0.5)
    if scale.cfg.get('device_tflops'):
        return scale.cfg.device_tflops * 1e3 * eff, f'{scale.cfg.device_tflops} TFLOP/s assumed per GPU'
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    # an amp scale pretrains in bf16: its steps run at the bf16 rate (2.2x fp32's on a CPU with bf16 units)
    dtype = torch.bfloat16 if scale.cfg.get('amp') else torch.float32
    precision = 'bf16' if scale.cfg.get('amp') else 'fp32'
    if device == 'cuda':
        rate = matmul_gflops(repeats=3, device=device, dtype=dtype)
        return rate * eff, f'{eff:.0%} of this machine\'s measured {rate:.0f} GFLOP/s cuda matmul rate ({precision})'
    # a CPU's rate per core of CPU time: its wall-clock rate, measured beside running cells, read 0.4 to 23
    # GFLOP/s between a study's steps and made its estimates hundreds of times too long
    threads = torch.get_num_threads()
    # 1,024-size products keep the measurement near a quarter of a CPU-second; 2,048 reads a little higher
    core = matmul_gflops(n=1024, repeats=3, dtype=dtype, per_core=True)
    # two significant digits below 10: a slow rate must not read "0 GFLOP/s"
    shown = f'{core:.0f}' if core >= 10 else f'{core:.2g}'
    source = (f'{eff:.0%} of this machine\'s measured cpu matmul rate ({precision}), {shown} GFLOP/s a core '
              f'x {threads} thread{"s" if threads > 1 else ""}')
    return core * threads * eff, source + busy_note(threads)


def busy_note(threads: int) -> str:
    """What the estimate's header says of the times when the machine is busy or torch's threads are capped by
    OMP_NUM_THREADS. The rate is measured in CPU time, so load does not lower it: the times are an idle
    machine's at ``threads`` threads, and work running beside the cells makes them take longer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):   # not on Windows
        load = 0.0
    notes = []
    if load > 0.5 * cores:
        notes.append(f'load average {load:.1f} on {cores} cores: the times below are an idle machine\'s; beside '
                     f'that work the cells take longer')
    capped = os.environ.get('OMP_NUM_THREADS', '')
    if capped.isdigit() and int(capped) < cores:
        notes.append(f'OMP_NUM_THREADS={capped} lets torch use {threads} of {cores} cores: the times below are '
                     f'for {threads} thread{"s" if threads > 1 else ""}')
    return f' [{"; ".join(notes)}]' if notes else ''


def build_cell_model(cell: Cell, cfg):
    """Build the cell's pretraining model from its config ``cfg``, turning a bad value into an error that names
    the cell."""
    try:
        torch.manual_seed(0)
        return MODELS.build(cfg.model)
    except Exception as err:   # noqa: BLE001 - any build failure is the value's fault; say which one
        raise AblationError(f'{cell.name} cannot be built: {type(err).__name__}: {err}') from err


def estimate_cell(cell: Cell, scale: Scale, evaluations: list[str], gflops_per_s: float,
                  record: dict | None = None) -> CellEstimate:
    """FLOPs and idle-machine seconds of ``cell`` at ``gflops_per_s``. ``record`` is the cell's stored record,
    if any: when the model cannot be built here because a weight file it reads is missing (a fresh clone has no
    tokenizer), the step's FLOPs come from the record and the extraction FLOPs from the encoder alone, which
    reads no such file. A cell without a record still has to build, so a bad value fails before training."""
    cfg = readable_copy(cell.config(), scale)    # a pinned file missing here is read from the store's copy
    stored_flops = (record or {}).get('flops_gflops_per_img') or {}
    if stored_flops.get('train') and missing_weight_files(cfg):
        train_gflops = stored_flops['train']
        encoder = ENCODERS.build(cfg.model.encoder)
    else:
        model = build_cell_model(cell, cfg)
        train_gflops = algorithm_flops(model, cfg.model.encoder.img_size)['train']
        encoder = model.encoder
    img = cfg.model.encoder.img_size
    with torch.no_grad():
        encoder_gflops = count_flops(lambda: encoder(torch.randn(1, 3, img, img))) / 1e9
    epochs = cfg.train_cfg.get('max_epochs', 1)
    pretrain_gflop = train_gflops * scale.cfg.num_train_images * epochs if cell.value.pretrain else 0.0
    return CellEstimate(cell, train_gflops, encoder_gflops, pretrain_gflop, pretrain_gflop / gflops_per_s,
                        evaluation_seconds(scale, evaluations, encoder_gflops, gflops_per_s))


def evaluation_seconds(scale: Scale, evaluations: list[str], encoder_gflops: float, gflops_per_s: float) -> float:
    """Idle-machine seconds of ``evaluations`` of an encoder of ``encoder_gflops`` per image at ``gflops_per_s``."""
    images = scale.cfg.num_train_images
    eval_s, extracted = 0.0, False
    probe_s = dict(scale.cfg.get('probe_seconds', {}))
    for name in evaluations:
        spec = scale.evaluation(name)
        if spec['protocol'] == 'finetune':
            from mimbench.evaluation.run import load_eval_config
            ft = load_eval_config('finetune', repo_path(spec['config']), dict(spec.get('options', {})))
            eval_s += 3 * encoder_gflops * images * ft.epochs / gflops_per_s   # forward + backward ~ 3x forward
            continue
        if not extracted:   # one pass over train + test images serves every probe (features are cached)
            eval_s += encoder_gflops * images * (1 + scale.cfg.get('test_fraction', 0.2)) / gflops_per_s
            extracted = True
        eval_s += probe_s.get(name, 0.0)
    return eval_s


@dataclass
class MeasuredRate:
    """What the store's recent finished cells on this host achieved: the basis of a second estimate."""
    gflops_per_cpu_s: float     # median pretraining throughput per CPU-second of the training process
    low: float                  # slowest and fastest cell in the window
    high: float
    eval_s: float | None        # median seconds of the requested evaluations, shared feature extraction included
    cells: int                  # pretrained cells the rate comes from

    def total_s(self, est: CellEstimate) -> float:
        """Seconds of the cell ``est`` at this rate: its pretraining FLOPs over the measured throughput, plus
        the measured evaluation time (``est``'s own when the store has none for these evaluations)."""
        return est.pretrain_gflop / self.gflops_per_cpu_s + (est.eval_s if self.eval_s is None else self.eval_s)


def measured_rate(records, eval_hashes: dict[str, str], host: dict | None = None, window: int = 12,
                  extracts: bool = True) -> MeasuredRate | None:
    """The median throughput of the ``window`` most recently finished pretrained cells of ``host`` (default:
    this machine, CPU model included) in the store ``records``, and the median time their evaluations
    ``eval_hashes`` ({column: eval hash}; metrics of another eval config do not count) took, plus their
    feature extraction when ``extracts``. Recent cells only, because the way cells are run (threads, cells
    side by side) changes between sessions. None when fewer than three cells qualify.

    Single-process CPU cells only: a DDP record's ``cpu_seconds`` is rank 0's alone, and a GPU cell's CPU time
    says nothing about its speed. A cell whose pretraining was resumed on another machine is no rate of
    either. A record this function cannot read is skipped, not fatal: the estimate runs before every sweep."""
    host = host or host_info()

    def ran_here(record: dict) -> bool:
        return record.get('host') == host and all(clock_host(h) == host for h in pretrain_hosts(record))

    mine = sorted((r for r in records if r and ran_here(r)), key=lambda r: r.get('finished') or '')
    rates, evals = [], []
    for r in reversed(mine):
        try:
            pre, flops = r.get('pretrain') or {}, r.get('flops_gflops_per_img') or {}
            if (pre.get('world_size') or 1) != 1 or not (pre.get('cpu_seconds') and flops.get('train')):
                continue
            rates.append(flops['train'] * pretrain_images(r) / pre['cpu_seconds'])
        except Exception:   # noqa: BLE001 - an unreadable or older record must not stop a sweep's estimate
            continue
        metrics = r.get('metrics') or {}
        if all(metrics.get(n, {}).get('eval_hash') == h and metrics[n].get('wall_time_s') is not None
               for n, h in eval_hashes.items()):
            evals.append((r.get('extract_seconds') or 0.0) * extracts
                         + sum(metrics[n]['wall_time_s'] for n in eval_hashes))
        if len(rates) == window:
            break
    if len(rates) < 3:
        return None
    return MeasuredRate(statistics.median(rates), min(rates), max(rates),
                        statistics.median(evals) if evals else None, len(rates))


def pretrain_images(record: dict) -> int:
    """Images one record's pretraining processed: iterations x the batch of its stored config."""
    batch = record_config(record).train_dataloader.batch_size
    return record['pretrain']['iters'] * batch
