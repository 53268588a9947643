"""Regenerate the ablation tables of the MAE and CAE papers: pretrain and evaluate every cell of an axis, then
write the table (and plot) with the paper's numbers beside ours.

    python tools/ablate.py --axis mask_sampling                  # micro scale, CPU, resumable
    python tools/ablate.py --axis decoder --seeds 2              # Table 1a + 1b -> docs/results/decoder.md
    python tools/ablate.py --axis mask_ratio --values 0.1 0.75 --dry-run
    python tools/ablate.py --axis all --scale paper --launcher slurm --slurm-partition gpu
    python tools/ablate.py --axis speed                          # wall-clock table (paper Table 2 analog)
    python tools/ablate.py --report                              # every scale's tables and every study, from the stores
    python tools/ablate.py --study schedule                      # the schedule study: every step in order
    python tools/ablate.py --study schedule --report             # -> docs/results/schedule_study.md
    python tools/ablate.py --merge ../clone/docs/results         # records a second checkout made, into this one
    python tools/ablate.py --scale micro_bf16_20ep --evaluations ft --adopt ft.json   # a hand-made evaluation

Rerunning a command continues it: finished cells are read from the store, an interrupted one resumes from its
last checkpoint.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mimbench.ablation.axes import AXES, SPECIAL_AXES, AblationError
from mimbench.ablation.cells import (Scale, ensure_artifacts, expand, find_record, fit_missing_bases,
                                     restore_weight_files, weight_files)
from mimbench.ablation.report import GROUPS, write_report, write_status
from mimbench.ablation.store import ResultStore
from mimbench.engine.runner import load_config
from mimbench.errors import USER_ERRORS
from mimbench.ablation.sweep import LAUNCHERS, SweepSpec, format_duration, run_sweep

AXIS_CHOICES = [*AXES, *GROUPS, *SPECIAL_AXES]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n')[1])
    p.add_argument('--axis', nargs='+', default=[], metavar='AXIS',
                   help=f'one or more of: {", ".join(AXIS_CHOICES)}')
    p.add_argument('--values', nargs='+', help="the axis's values to run instead of the paper's rows")
    p.add_argument('--scale', help='micro (CPU, CIFAR-10; the default) or paper (ViT-L, ImageNet), or a scale '
                                   'config path (configs/ablation/); --report without it: every scale')
    p.add_argument('--seeds', type=int, help="seeds per cell (default: the scale's)")
    p.add_argument('--finetune', action='store_true', help='also fine-tune every cell (the ft column)')
    p.add_argument('--evaluations', nargs='+', help="evaluation columns to run (default: the scale's)")
    p.add_argument('--study', help='run (or with --report, --dry-run: report, list) a study of '
                                    'configs/studies/, e.g. schedule')
    p.add_argument('--dry-run', action='store_true', help='list the cells, build each model, estimate the time')
    p.add_argument('--report', action='store_true', help='only rebuild tables and plots from the store')
    p.add_argument('--results', default='docs/results', help='where tables and plots go')
    p.add_argument('--merge', metavar='RESULTS',
                   help="bring the records of another checkout's results dir (its ablation/<scale> stores) into "
                        "--results: new cells, and evaluations added to a run we hold; two runs of one cell are "
                        "refused")
    p.add_argument('--adopt', nargs='+', metavar='RECORD',
                   help="store evaluation records made by hand (tools/eval.py on a cell's checkpoint) as the column "
                        "--evaluations names, for cells whose work dir is gone; each must match the cell and the "
                        "column's present recipe")
    p.add_argument('--store', help='results store directory (default: <results>/ablation/<scale>)')
    p.add_argument('--work-root', help='cell work dirs (default: work_dirs/ablation/<scale>)')
    p.add_argument('--data-root', help="dataset location for pretraining and evaluation")
    p.add_argument('--workers', type=int, default=1, help='cells run in parallel (one GPU each when GPUs exist)')
    p.add_argument('--launcher', choices=LAUNCHERS, default='local',
                   help="'slurm': one submitit job per cell; 'submitit-local': the same on this machine")
    p.add_argument('--slurm-partition')
    p.add_argument('--slurm-time', type=int, default=60 * 24 * 3, help='minutes per cell job')
    p.add_argument('--slurm-cpus', type=int, default=10, help='CPU cores per GPU of a cell job (data loading)')
    p.add_argument('--slurm-mem', type=int, default=64, help='GB of memory per GPU of a cell job')
    p.add_argument('--max-iters', type=int, help='stop each pretraining after N iterations (smoke tests)')
    p.add_argument('--speed-batch', type=int, help="batch size for --axis speed (default 8 at 224 px, else the "
                                                   "config's)")
    return p.parse_args(argv)


def axis_names(requested: list[str]) -> list[str]:
    names = []
    for name in requested:
        if name == 'all':
            names += list(AXES)
        elif name in GROUPS:
            names += list(GROUPS[name])
        elif name in AXES or name == 'speed':
            names.append(name)
        else:
            raise AblationError(f"unknown axis {name!r}; valid axes: {', '.join(AXIS_CHOICES)}")
    return list(dict.fromkeys(names))


def run_speed(scale: Scale, args) -> None:
    from mimbench.ablation.speed import run_speed_axis, speed_cells
    base = scale.method_config('mae')
    # 8 images fit a CPU step of ViT-L at 224 px; at micro scale the config's own batch
    batch = args.speed_batch or (8 if scale.context().img_size >= 224 else
                                 load_config(base, scale.base_options('mae')).train_dataloader.batch_size)
    out = Path(args.results) / ('speed.md' if scale.name == 'micro' else f'speed_{scale.name}.md')
    if args.dry_run:
        for label, cfg in speed_cells(base, scale.base_options('mae')):
            print(f'speed: {label} (mask token in encoder: {cfg.model.get("mask_token_in_encoder", False)}, '
                  f'decoder depth {cfg.model.decoder.depth}), batch {batch}, 2 warm-up + 5 timed steps')
        return
    run_speed_axis(base, str(out), batch_size=batch, iters=5, warmup=2, cfg_options=scale.base_options('mae'))
    print(f'wrote {out}')


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        if args.merge:
            if (args.axis or args.values or args.study or args.scale or args.store or args.report or args.dry_run
                    or args.adopt):
                raise AblationError('--merge takes only --results (where the records go): leave out --axis, '
                                    '--values, --study, --scale, --store, --report, --dry-run and --adopt')
            return merge_results(Path(args.merge), Path(args.results))
        if args.adopt:
            return adopt(args)
        if args.study:
            return run_study(args)
        if args.report and not (args.scale or args.axis or args.store):
            return report_everything(args)
        args.scale = args.scale or 'micro'
        scale = Scale.load(args.scale)
        names = axis_names(args.axis) if args.axis else ([] if args.report else None)
        if names is None:
            raise AblationError(f'give --axis (one or more of: {", ".join(AXIS_CHOICES)}), --report or --study')
        store_dir = args.store or str(Path(args.results) / 'ablation' / scale.name)
        store = ResultStore(store_dir)
        if not args.dry_run:            # an estimate writes nothing; pinned files enter keys by their pin
            restore_weight_files(store)  # unpinned files: keys hash their content
        if args.report:
            stored = {r['axis'] for r in store.records().values() if r and r.get('scale') == scale.name}
            if not stored:
                raise AblationError(f'the store {store_dir} has no records of scale {scale.name!r} yet: run an '
                                    f'axis first (python tools/ablate.py --axis ...)')
            report_names = [n for n in names if n != 'speed'] or sorted(stored, key=list(AXES).index)
            write_tables(scale, report_names, store, args.results)
            return
        if 'speed' in names:
            run_speed(scale, args)
            names.remove('speed')
            if not names:
                return
        sweep(args.scale, names, args.values, args.seeds or scale.cfg.seeds, store, store_dir, args)
    except USER_ERRORS as err:     # a bad axis, value, scale, config key or data: one line, not a traceback
        sys.exit(f'error: {err}')


def sweep(scale_ref: str, names: list[str], values: list[str] | None, seeds: int, store: ResultStore,
          store_dir: str, args, todo_out: dict[str, float] | None = None) -> None:
    """Run (or with --dry-run list) the cells of ``names`` x ``values`` x seeds at the scale ``scale_ref``
    (a name or a config path), then rewrite their tables."""
    scale = Scale.load(scale_ref)
    evaluations = list(args.evaluations or scale.cfg.default_evaluations)
    if args.finetune and 'ft' not in evaluations:
        evaluations.append('ft')
    for name in evaluations:
        scale.evaluation(name)      # an unknown evaluation fails here, listing the valid ones
    cells = expand(scale, names, seeds, values, max_iters=args.max_iters)
    if not args.dry_run:    # an estimate writes nothing
        # the pinned files these cells read, in place before the estimate builds them; then unpinned bases
        ensure_artifacts(scale, store, paths={p for cell in cells for p in weight_files(cell.config())})
        if fit_missing_bases(cells, args.data_root):
            cells = expand(scale, names, seeds, values, max_iters=args.max_iters)   # keys hash the basis
    work_root = args.work_root or str(Path('work_dirs') / 'ablation' / scale.name)
    estimate_s = dry_run(scale, cells, evaluations, store, listing=args.dry_run, todo_out=todo_out,
                         work_root=work_root)
    if args.dry_run:
        return
    spec = SweepSpec(scale=scale_ref, store=store_dir, work_root=work_root, evaluations=evaluations,
                     data_root=args.data_root)
    # one task per cell job; the cell's torchrun starts one process per GPU inside it
    gpus = int(scale.cfg.get('gpus_per_cell', 1))
    slurm = dict(slurm_partition=args.slurm_partition, timeout_min=args.slurm_time, nodes=1,
                 gpus_per_node=gpus, tasks_per_node=1, cpus_per_task=args.slurm_cpus * gpus,
                 mem_gb=args.slurm_mem * gpus)
    start = time.perf_counter()
    run_sweep(cells, spec, workers=args.workers, launcher=args.launcher, estimate_s=estimate_s, slurm=slurm)
    print(f'sweep took {format_duration(time.perf_counter() - start)}')
    # the tables always show every row of the axis (--values only chose what to run)
    write_tables(scale, names, store, args.results)


def keep_longest(todo: dict[str, float], key: str, seconds: float) -> None:
    """Count a cell once in ``todo`` (key -> seconds): a cell of several steps at its longest estimate (the
    one with fine-tuning, say)."""
    todo[key] = max(todo.get(key, 0.0), seconds)


def write_tables(scale: Scale, names: list[str], store: ResultStore, results: str) -> None:
    """Rewrite the tables of ``names`` and the scale's status page from the store, saying what was written."""
    for path in write_report(scale, names, store, results):
        print(f'wrote {path}')
    print(f'wrote {write_status(scale, store, results)}')


def adopt(args) -> None:
    """--adopt: hand-made evaluation records into the column ``--evaluations`` names, then the scale's tables."""
    from mimbench.ablation.execute import adopt_evaluation
    if not args.scale or not args.evaluations or len(args.evaluations) != 1:
        raise AblationError('--adopt needs --scale and one column in --evaluations (e.g. --evaluations ft)')
    if (args.axis or args.values or args.study or args.dry_run or args.report or args.seeds or args.finetune
            or args.max_iters or args.work_root or args.data_root or args.merge):
        raise AblationError('--adopt takes only --scale, --evaluations, --results and --store')
    scale = Scale.load(args.scale)
    store = ResultStore(args.store or Path(args.results) / 'ablation' / scale.name)
    axes = []
    for path in args.adopt:
        record = adopt_evaluation(scale, store, args.evaluations[0], path)
        print(f'adopted {path}: {args.evaluations[0]} of {record["label"]} seed {record["seed"]} = '
              f'{record["metrics"][args.evaluations[0]]["accuracy"]}%')
        axes.append(record['axis'])
    write_tables(scale, sorted(set(axes), key=list(AXES).index), store, args.results)


def report_everything(args) -> None:
    """--report alone: the tables and status page of every scale with a store under ``<results>/ablation``,
    then the report of every study (configs/studies/) with records in one of its stores."""
    from mimbench.ablation.study import Study, StudyData, write_study_report
    from mimbench.paths import configs_dir
    root = Path(args.results) / 'ablation'
    scales = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    reported = set()
    for name in scales:
        try:
            scale = Scale.load(name)
        except AblationError:      # a store of a scale config given by path: report it with --scale PATH
            print(f'note: {root / name} is the store of no scale in configs/ablation/; skipped')
            continue
        store = ResultStore(root / name)
        stored = {r['axis'] for r in store.records().values() if r and r.get('scale') == scale.name}
        if not stored:
            continue
        restore_weight_files(store)
        print(f'=== scale {name}')
        write_tables(scale, sorted(stored, key=list(AXES).index), store, args.results)
        reported.add(name)
    for path in sorted((configs_dir() / 'studies').glob('*.py')):
        try:
            study = Study.load(path.stem)
        except AblationError as err:     # one broken study config does not stop the others' reports
            print(f'note: study {path.stem} skipped: {err}')
            continue
        if not reported & set(study.schedules.values()):
            continue
        print(f'=== study {study.name}')
        stores = {label: ResultStore(root / name) for label, name in study.schedules.items()}
        for out in write_study_report(study, args.results, StudyData(study, stores)):
            print(f'wrote {out}')
    if not reported:
        raise AblationError(f'no results store under {root} holds records yet: run an axis first '
                            f'(python tools/ablate.py --axis ...)')


def merge_results(theirs: Path, ours: Path) -> None:
    """--merge: every store under ``theirs/ablation`` into the same scale's store under ``ours/ablation``, one
    line per scale; an error (exit 1) naming each cell left as it was (two runs of one cell, two results of one
    column, an unreadable record, a missing weight file), after everything else is merged."""
    from mimbench.ablation.execute import current_eval_hashes
    from mimbench.ablation.store import merge_stores
    stores = sorted(p for p in (theirs / 'ablation').glob('*') if p.is_dir() and any(p.glob('*.json')))
    if not stores:
        raise AblationError(f'{theirs / "ablation"} holds no results store (<scale>/<key>.json): give the other '
                            f'checkout\'s results dir, e.g. ../other/docs/results')
    refused = []
    for store in stores:
        try:
            current = current_eval_hashes(Scale.load(store.name))
        except USER_ERRORS:
            current = None       # a scale this checkout does not define: results are compared as they are
        done = merge_stores(ResultStore(store), ResultStore(ours / 'ablation' / store.name), current)
        kinds = ('new', 'extended', 'same', 'kept', 'conflict', 'unreadable', 'missing file')
        print(f'{store.name}: ' + ', '.join(f'{len(done[k])} {k}' for k in kinds if k in done)
              + ('' if current is not None else ' (a scale not defined here: its tables need its config)'))
        refused += [f'{store.name}/{entry}' for k in kinds[4:] for entry in done.get(k, [])]
    print(f'merged into {ours / "ablation"}; tables: python tools/ablate.py --report --results {ours}')
    if refused:
        raise AblationError('left as they are here: ' + '; '.join(refused))


def run_study(args) -> None:
    """--study: every step of the study's plan in order (each a sweep that skips what its store holds), then
    the study's report; --report writes only the report, --dry-run lists every step's cells."""
    from mimbench.ablation.study import Study, StudyData, plan, write_study_report
    if args.axis or args.values or args.seeds or args.scale or args.store:
        raise AblationError('--study runs the scales, axes, values and seeds its config names: leave out '
                            '--axis, --values, --seeds, --scale and --store')
    study = Study.load(args.study)
    stores = {label: ResultStore(Path(args.results) / 'ablation' / name) for label, name in study.schedules.items()}
    if not args.report:
        steps = plan(study)
        todo: dict[str, float] = {}
        for i, step in enumerate(steps, 1):
            print(f'=== study {study.name}, step {i}/{len(steps)}, {step.label} epochs: {step.command}')
            store = stores[step.label]
            if not args.dry_run:
                restore_weight_files(store)
            step_args = argparse.Namespace(**{**vars(args), 'finetune': step.finetune})
            sweep(step.scale, [step.axis], step.values, step.seeds, store, str(store.root), step_args, todo)
        if args.dry_run:
            # the steps overlap (the default cell is a row of every axis): each cell once
            print(f'=== study {study.name}: {len(todo)} cells still to run or evaluate, about '
                  f'{sum(todo.values()) / 3600:.1f} hours of one process (each cell once, at its step\'s store '
                  f'rate where the step prints one, else at its estimate)')
            return
    for path in write_study_report(study, args.results, StudyData(study, stores)):
        print(f'wrote {path}')


def dry_run(scale: Scale, cells, evaluations: list[str], store: ResultStore, listing: bool,
            todo_out: dict[str, float] | None = None, work_root: str | Path | None = None) -> float | None:
    """Build every cell (bad values fail here) and estimate; print the list when ``listing``. Returns the
    mean estimated seconds per cell still to run (from the store's measured rate when it has one). A cell
    whose work dir under ``work_root`` holds its finished pretraining counts only its missing evaluations, one
    with checkpoints of an unfinished pretraining only the iterations after the newest (where it resumes);
    a stored cell whose work dir is gone cannot be evaluated here and counts nothing. A cell another process
    is running says so. ``todo_out`` gets key -> seconds of every cell still to run or evaluate, on the basis
    the return value uses."""
    import dataclasses
    import torch
    from mimbench.ablation.estimate import device_gflops, estimate_cell, evaluation_seconds, measured_rate
    from mimbench.ablation.execute import cell_work_dir, eval_config, expected_iterations, missing_evaluations
    from mimbench.engine.checkpoint import resume_iteration
    from mimbench.lockfile import live_holder
    rate, source = device_gflops(scale)
    work_root = Path(work_root or Path('work_dirs') / 'ablation' / scale.name)
    by_cpu = not scale.cfg.get('device_tflops') and not torch.cuda.is_available()
    configs = {name: eval_config(scale, name) for name in evaluations} if by_cpu else {}
    rates: dict[tuple[str, ...], object] = {}

    def store_rate(names: list[str]):
        if tuple(names) not in rates:
            rates[tuple(names)] = measured_rate(store.records().values(), {n: configs[n][2] for n in names},
                                                extracts=any(configs[n][0] != 'finetune' for n in names))
        return rates[tuple(names)]
    measured = store_rate(evaluations) if by_cpu else None
    todo_s = todo_measured_s = 0.0
    todo, orphans = 0, []
    rows = []
    for cell in cells:
        record = find_record(store, cell)
        missing = missing_evaluations(record, scale, evaluations)
        work_dir = cell_work_dir(work_root, cell)
        pretrained = not cell.value.pretrain or (work_dir / 'pretrain.json').is_file()
        est = estimate_cell(cell, scale, evaluations, rate, record)
        status, cell_s, cell_measured_s = 'done', 0.0, 0.0
        if missing and record is not None and not pretrained:
            status = 'work dir gone'       # the sweep refuses it: pretraining again would mix two runs
            orphans.append(cell)
        elif missing and pretrained and cell.value.pretrain:
            status = 'to evaluate'
            cell_s = evaluation_seconds(scale, missing, est.encoder_gflops, rate)
            part = store_rate(missing) if measured else None
            cell_measured_s = part.eval_s if part is not None and part.eval_s is not None else cell_s
        elif missing:
            status = 'to run'
            done_iters = resume_iteration(work_dir) if cell.value.pretrain else 0
            total_iters = cell.max_iters or expected_iterations(cell, scale)
            if done_iters and total_iters and done_iters > total_iters and not cell.max_iters:
                # a checkpoint of a longer run (another dataset size): the sweep's iteration check refuses it
                status = (f'to run, but its checkpoint (iteration {done_iters}) is past the run\'s {total_iters}: '
                          f'the sweep will refuse it')
            elif done_iters and total_iters:
                left = max(0.0, 1.0 - done_iters / total_iters)
                est = dataclasses.replace(est, pretrain_gflop=est.pretrain_gflop * left,
                                          pretrain_s=est.pretrain_s * left)
                status = f'to run from iteration {done_iters}/{total_iters}'
            cell_s = est.total_s
            cell_measured_s = measured.total_s(est) if measured else 0.0
        # the sweep's cell lock, or the training lock of a run started by hand (tools/train.py --resume)
        if missing and (holder := live_holder(work_dir / '.lock') or live_holder(work_dir / '.train.lock')):
            status += f', running now ({holder})'
        if status.startswith(('to run', 'to evaluate')):
            todo += 1
            todo_s += cell_s
            todo_measured_s += cell_measured_s
            if todo_out is not None:
                keep_longest(todo_out, cell.key, cell_measured_s if measured else cell_s)
        rows.append((cell, est, status, cell_s, cell_measured_s))
    if listing:
        print(f'{len(cells)} cells at scale {scale.name!r}, evaluations {", ".join(evaluations)}; '
              f'times estimated at {source}:')
        unit = 'GPU' if scale.cfg.get('device_tflops') else 'machine'
        times = 'on one GPU' if unit == 'GPU' else 'on this machine'
        extra = f' {"at store rate":>13}' if measured else ''
        print(f'  {"cell":<34} {"key":<16} {"train GFLOPs/img":>16} {"pretrain":>9} {"eval":>8}{extra}  status '
              f'(times {times}; a cell to evaluate counts its missing evaluations, a resumed one its '
              f'iterations left)')
        for cell, est, status, cell_s, cell_measured_s in rows:
            evaluate = status.startswith('to evaluate')
            extra = f' {format_duration(cell_measured_s if status != "done" else measured.total_s(est)):>13}' \
                if measured else ''
            print(f'  {cell.name:<34} {cell.key:<16} {est.train_gflops:>16.4g} '
                  f'{"-" if evaluate else format_duration(est.pretrain_s):>9} '
                  f'{format_duration(cell_s if evaluate else est.eval_s):>8}{extra}  {status}')
        print(f'to run or evaluate: {todo} cells, about {todo_s / 3600:.1f} {unit}-hours')
        if measured:
            evals = (f', evaluations {format_duration(measured.eval_s)} a cell' if measured.eval_s is not None
                     else '')
            print(f'at the store rate (the {measured.cells} latest cells of this host pretrained at a median '
                  f'{measured.gflops_per_cpu_s:.0f} GFLOP/s per CPU-second, {measured.low:.0f}-{measured.high:.0f}'
                  f'{evals}): about {todo_measured_s / 3600:.1f} hours per process (pretraining CPU time + '
                  f'evaluation wall time), if run the way those cells were')
        if orphans:
            print(f'note: {len(orphans)} stored cells lack evaluations but their work dirs under {work_root} are '
                  f'gone, so the sweep cannot evaluate them: {", ".join(c.name for c in orphans)}')
    if not todo:
        return None
    return (todo_measured_s if measured else todo_s) / todo


if __name__ == '__main__':
    main()
