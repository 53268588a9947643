"""Run one cell: pretrain (resuming from its work dir), evaluate, write its record to the store.

Every stage leaves a file behind in ``<work root>/<cell key>/`` and skips itself when that file exists:
``pretrain.json`` once pretraining has finished (before that, mmengine checkpoints every ``interval``
iterations and ``--resume`` continues from the latest), ``eval/<name>.json`` per evaluation, and finally the
store record. A cell killed at any moment therefore loses at most the steps since its last checkpoint, or the
evaluation that was running.

Pretraining runs ``tools/train.py`` in a child process: a crash (or an out-of-memory kill) there cannot take
the sweep down, and mmengine's per-process singletons (loggers, message hubs) start clean for every cell.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mimbench.ablation.axes import AblationError
from mimbench.ablation.cells import Cell, Scale, ensure_artifacts, find_record, repo_path, weight_files
from mimbench.ablation.store import ResultStore, code_version
from mimbench.fileio import read_json, write_json_atomic
from mimbench.lockfile import LockHeld, hold_lock
from mimbench.machine import host_info, resolve_device
from mimbench.paths import CHECKOUT, config_name

Log = Callable[[str], None]


class CellFailed(RuntimeError):
    """A cell's pretraining or evaluation failed; the message says where its log is."""


class CellBusy(RuntimeError):
    """Another live process is running this cell (two sweeps over overlapping cells)."""


@contextlib.contextmanager
def cell_lock(work_dir: Path):
    """Hold ``work_dir/.lock`` while running a cell, so that two sweeps started over overlapping cells (two
    terminals, two machines or cluster jobs on one filesystem) never train the same cell into the same work
    dir; raises :class:`CellBusy` when a live process holds it (see :func:`mimbench.lockfile.hold_lock`). The
    training it launches takes its own ``.train.lock`` in the same dir."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(hold_lock(work_dir / '.lock'))
        except LockHeld as err:
            raise CellBusy(f'{work_dir.name} is being run by {err.holder}') from None
        yield


def cell_work_dir(work_root: str | os.PathLike, cell: Cell) -> Path:
    return Path(work_root) / cell.key


def write_cell_config(cell: Cell, work_dir: Path, clock_interval: int | None = None) -> Path:
    """Dump the cell's resolved pretraining config (plus the training clock) to ``work_dir/cell_config.py``."""
    cfg = cell.config()
    interval = clock_interval or cfg.default_hooks.checkpoint.interval
    hooks = [h for h in cfg.get('custom_hooks') or []
             if not (isinstance(h, dict) and h.get('type') == 'TrainClockHook')]
    cfg.custom_hooks = hooks + [dict(type='TrainClockHook', interval=interval)]
    path = work_dir / 'cell_config.py'
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(path))
    return path


def _last_loss(work_dir: Path) -> float | None:
    """The last logged training loss (mmengine's ``<timestamp>/vis_data/scalars.json``)."""
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda p: p.parent.parent.name)
    for path in reversed(logs):
        for line in reversed(path.read_text().splitlines()):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:     # the line a killed run was writing
                continue
            if 'loss' in entry:
                return float(entry['loss'])
    return None


def _die_with_parent() -> None:
    # Linux: the training child gets SIGKILL when the driver dies, so a killed sweep never leaves a trainer
    # running that a restarted sweep would race in the same work dir
    try:
        import ctypes
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def train_command(cell: Cell, scale: Scale, config: Path, work_dir: Path, data_root: str | None) -> list[str]:
    """``tools/train.py`` for the cell; under ``torchrun`` when the scale wants several GPUs per cell."""
    args = ['-m', 'mimbench.cli.train', str(config), '--work-dir', str(work_dir), '--resume', '--seed',
            str(cell.seed)]
    gpus = int(scale.cfg.get('gpus_per_cell', 1))
    if gpus > 1:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={gpus}', *args,
               '--launcher', 'pytorch']
    else:
        cmd = [sys.executable, *args]
    if scale.cfg.get('amp'):
        cmd.append('--amp')
    if scale.cfg.get('device_data'):
        cmd.append('--device-data')
    if data_root:
        cmd += ['--data-root', data_root]
    if cell.max_iters:
        cmd += ['--max-iters', str(cell.max_iters)]
    return cmd


def pretrain(cell: Cell, scale: Scale, work_dir: Path, *, data_root: str | None = None, stream: bool = True,
             log: Log = print) -> dict:
    """Pretrain the cell (or resume it) in a child process; returns the summary written to ``pretrain.json``
    (checkpoint path, iterations, final loss, wall and CPU seconds across resumes, the machines it ran on)."""
    from mimbench.engine.checkpoint import pointed_checkpoint, relocated
    done = read_json(work_dir / 'pretrain.json')
    if done is not None:
        return dict(done, checkpoint=relocated(done['checkpoint'], work_dir)) if done.get('checkpoint') else done
    cmd = train_command(cell, scale, write_cell_config(cell, work_dir), work_dir, data_root)
    versions = note_code_version(work_dir, code_version())
    log_path = work_dir / 'pretrain.log'
    # the child trains with the very mimbench this process runs (a checkout, a copy of one, or an install)
    env = dict(os.environ, PYTHONUNBUFFERED='1',
               PYTHONPATH=os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get('PYTHONPATH')) if p))
    with open(log_path, 'a') as log_file:
        log_file.write(f'$ {" ".join(cmd)}\n')
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                preexec_fn=_die_with_parent)
        for line in proc.stdout:
            log_file.write(line)
            if stream and ' Iter(train) ' in line:      # mmengine's progress lines, not its config dump
                log(f'  {cell.name}: {line.split(" - mmengine - INFO - ")[-1].strip()}')
        code = proc.wait()
    if code != 0:
        raise CellFailed(f'pretraining of {cell.name} failed (exit {code}); log: {log_path}')
    last = pointed_checkpoint(work_dir)
    if not last:    # the cell would be evaluated as a random initialization, under the pretrained cell's name
        raise CellFailed(f'pretraining of {cell.name} exited cleanly but left no checkpoint in {work_dir} '
                         f'(no last_checkpoint pointer); log: {log_path}')
    clock = read_json(work_dir / 'train_clock.json') or {}
    summary = dict(checkpoint=last, iters=clock.get('iter'), final_loss=_last_loss(work_dir),
                   wall_seconds=clock.get('wall_seconds'), cpu_seconds=clock.get('cpu_seconds'),
                   segments=clock.get('segments'), world_size=clock.get('world_size'), max_iters=cell.max_iters,
                   code_versions=versions, hosts=clock.get('hosts'))
    write_json_atomic(work_dir / 'pretrain.json', summary)
    return summary


def expected_iterations(cell: Cell, scale: Scale) -> int | None:
    """The iterations a full run of the cell takes on the scale's dataset (``num_train_images``), as
    ``MIMTrainLoop`` counts them; None when the scale does not say its dataset size or the run is cut short."""
    images = scale.cfg.get('num_train_images')
    if not images or cell.max_iters:
        return None
    cfg = cell.config()
    world = int(scale.cfg.get('gpus_per_cell', 1))
    per_epoch = -(-int(images) // world) // int(cfg.train_dataloader.batch_size)      # per rank, drop_last
    return max(1, round(float(cfg.train_cfg.max_epochs) * per_epoch))


def check_trained_iterations(cell: Cell, scale: Scale, summary: dict | None) -> None:
    """Refuse to record a cell trained on another dataset than its scale's: the data root is a location, not
    part of a cell's key, so a --data-root with another dataset (a subset, say) would otherwise store its
    results under the full dataset's cells."""
    expected = expected_iterations(cell, scale)
    done = (summary or {}).get('iters')
    if expected is not None and done is not None and done != expected:
        raise CellFailed(f'{cell.name} trained {done} iterations where scale {scale.name!r} takes {expected} '
                         f'({scale.cfg.num_train_images:,} training images): the data it read is not the '
                         f"scale's dataset. Another dataset is another scale: a scale config with its own "
                         f'num_train_images (and store)')


def wrong_data(scale: Scale, record: dict) -> str | None:
    """What is wrong with the data an evaluation record counted, against the split sizes its scale states
    (``num_train_images``, ``num_test_images``); None when nothing is. The data root is a location outside the
    eval hash, as for pretraining, so a --data-root with a subset or another dataset would otherwise store its
    accuracy under the full dataset's column."""
    expected = dict(train=scale.cfg.get('num_train_images'), test=scale.cfg.get('num_test_images'))
    counted = record.get('data') or {}
    wrong = [f'{n:,} {split}' for split, n in counted.items() if expected.get(split) not in (None, n)]
    if not wrong:
        return None
    stated = ' and '.join(f'{n:,} {split}' for split, n in expected.items() if n is not None)
    return f'read {" and ".join(wrong)} images where scale {scale.name!r} has {stated} images'


def note_code_version(work_dir: Path, version: str) -> list[str]:
    """Add ``version`` to the cell's ``code_versions.json`` unless it is already the last entry; return the list.

    A cell resumed in a later session may train its remaining steps on newer code, and the record's own
    ``code_version`` is taken when the record is written, after the evaluations: this list says which code
    trained the weights, one entry per change, in order."""
    path = work_dir / 'code_versions.json'
    versions = read_json(path) or []
    if not versions or versions[-1] != version:
        versions.append(version)
        write_json_atomic(path, versions)
    return versions


# An evaluation protocol whose code changes its results on purpose raises its version here, so metrics of the old
# code are not reused. finetune 2: trains under MIMRunner (per-iteration reseeding, ResumableSampler order).
PROTOCOL_VERSIONS = {'finetune': 2}


def eval_config(scale: Scale, name: str, auto_dtype: str | None = None):
    """The resolved eval config of evaluation column ``name`` and a 12-hex hash of it: a metric computed
    under another eval config (an edited recipe) is not reused. ``'auto'`` dtypes resolve to ``auto_dtype``,
    by default to what they mean on this machine."""
    from mimbench.evaluation.run import load_eval_config   # heavy imports only when evaluating
    spec = scale.evaluation(name)
    cfg = load_eval_config(spec['protocol'], repo_path(spec['config']), dict(spec.get('options', {})))
    resolve_auto_dtypes(cfg, auto_dtype)
    ident = {k: v for k, v in cfg.to_dict().items() if k not in ('data_root',)}
    if (version := PROTOCOL_VERSIONS.get(spec['protocol'], 1)) > 1:   # version 1 keeps the hashes it always had
        ident['protocol_version'] = version
    # the probes read extracted features: a change to extraction that raises its version is a change of theirs
    from mimbench.evaluation.features import FEATURES_VERSION
    if spec['protocol'] != 'finetune' and FEATURES_VERSION > 1:
        ident['features_version'] = FEATURES_VERSION
    ident['data'] = {k: ({kk: vv for kk, vv in v.items() if kk != 'root'} if isinstance(v, dict) else v)
                     for k, v in dict(ident.get('data', {})).items()}
    blob = json.dumps(ident, sort_keys=True, default=str)
    return spec['protocol'], cfg, hashlib.sha256(blob.encode()).hexdigest()[:12]


def current_eval_hashes(scale: Scale) -> dict[str, set[str]]:
    """Per evaluation column of the scale, the eval hashes its present recipe gives: the metrics a table
    shows. Two where the recipe leaves a dtype ``'auto'`` (bfloat16 where the machine has it, float32
    elsewhere): both are today's recipe, and a table must read the same on every machine."""
    return {name: {eval_config(scale, name, dtype)[2] for dtype in ('bfloat16', 'float32')}
            for name in scale.cfg.evaluations}


def resolve_auto_dtypes(cfg, here: str | None = None) -> None:
    """Replace an eval config's ``'auto'`` dtypes by ``here``, by default what they resolve to on the device
    evaluations run on here (a GPU when there is one), so that the eval hash says which numerics ran: 'auto'
    is bfloat16 on one CPU and float32 on another."""
    from mimbench.machine import dtype_name, resolve_dtype
    here = here or dtype_name(resolve_dtype('auto', resolve_device('auto')))
    if cfg.get('extract', {}).get('dtype') == 'auto':
        cfg.extract.dtype = here
    if cfg.get('token_dtype') == 'auto':
        cfg.token_dtype = here


def evaluate_cell(cell: Cell, scale: Scale, work_dir: Path, name: str, checkpoint: str | None, *,
                  data_root: str | None = None, log: Log = print) -> dict:
    """One evaluation of the cell, as an evaluation record (``mimbench.evaluation.records``); reused when
    ``eval/<name>-<eval hash>.json`` exists for the same weights."""
    from mimbench.evaluation.run import evaluate
    protocol, cfg, digest = eval_config(scale, name)
    out = work_dir / 'eval' / f'{name}-{digest}.json'
    previous = read_json(out)
    if previous is not None and _same_weights(previous, checkpoint) and not wrong_data(scale, previous):
        return dict(previous, eval_hash=digest)     # the file's name holds the hash; its record does not
    scratch = None if checkpoint else str(write_cell_config(cell, work_dir))
    try:
        record = evaluate(protocol, checkpoint, scratch=scratch, eval_cfg=cfg, data_root=data_root, seed=cell.seed,
                          cache_dir=str(work_dir / 'features'), out=str(out), log=log)
    except Exception as err:   # noqa: BLE001 - one cell's failure must not stop the sweep; say where and why
        raise CellFailed(f'{name} evaluation of {cell.name} failed: {type(err).__name__}: {err}') from err
    if why := wrong_data(scale, record):
        out.unlink(missing_ok=True)        # never to be reused, whatever --data-root the next run gives
        raise CellFailed(f"{name} evaluation of {cell.name} {why}: the data it read is not the scale's dataset")
    record['eval_hash'] = digest
    return record


# Seconds between two progress lines of one evaluation in a sweep's output: a probe logs every few seconds, a
# fine-tuning every 50 iterations, pretraining (whose lines the sweep passes on whole) every 20.
EVALUATION_PROGRESS_S = 60.0


def evaluation_progress(log: Log, prefix: str, clock: Callable[[], float] = time.monotonic) -> Log:
    """A log for one evaluation of a sweep: its lines (epochs, iterations, ETA) go on to ``log`` after
    ``prefix``, at most one per ``EVALUATION_PROGRESS_S``, so that an hours-long fine-tuning shows it is alive
    without a probe flooding the sweep's output."""
    last = -float('inf')

    def forward(msg: str) -> None:
        nonlocal last
        now = clock()
        if now - last >= EVALUATION_PROGRESS_S:
            last = now
            log(f'  {prefix} {msg.strip()}')
    return forward


# Eval-config keys that say how a run is carried out, not what it computes; and recipe keys a record's hparams
# name differently.
_RUNTIME_KEYS = {'data_root', 'data', 'extract', 'protocol', 'num_workers', 'threads', 'log_interval'}
_HPARAM_NAMES = {'drop_path': 'drop_path_rate'}


def adopt_evaluation(scale: Scale, store: ResultStore, name: str, path: str | Path) -> dict:
    """Store a fine-tuning record made by hand (``tools/eval.py`` on a cell's checkpoint) as column ``name`` of
    that cell, for a cell whose work dir is gone (the sweep cannot evaluate it again). Only a fine-tuning
    column (its record's hparams hold its whole recipe), and only when the record is that cell's: the cell's
    key and seed in this scale's store, a checkpoint of that name in the cell's work dir at the iteration its
    pretraining ended (by name: the store keeps no hash of the weights), every setting of the column's present
    recipe in its hparams, and the scale's split sizes. A record made before a change that raised the
    protocol's version without changing a setting cannot be told apart: its ``created`` date is kept. The
    metric keeps where it came from (``adopted``). Returns the updated store record; raises AblationError
    naming every mismatch."""
    evaluation = read_json(path)
    if not isinstance(evaluation, dict) or 'accuracy' not in evaluation:
        raise AblationError(f'{path} is not an evaluation record (tools/eval.py --out writes one)')
    protocol, cfg, digest = eval_config(scale, name)
    if protocol != 'finetune':
        raise AblationError(f'--adopt takes fine-tuning columns only (their records hold the whole recipe); '
                            f'column {name!r} is {protocol!r}')
    key = evaluation.get('config')
    record = store.get(key) if key else None
    if record is None or record.get('scale') != scale.name:
        raise AblationError(f'{path} evaluates config {key!r}, which is no cell of scale {scale.name!r} in the '
                            f'store {store.root}')
    checkpoint = Path(evaluation.get('checkpoint') or '')
    iters = (record.get('pretrain') or {}).get('iters')
    wrong = []
    if evaluation.get('seed') != record['seed']:
        wrong.append(f'seed {evaluation.get("seed")} where the cell has {record["seed"]}')
    if evaluation.get('protocol') != protocol:
        wrong.append(f'protocol {evaluation.get("protocol")!r} where column {name!r} is {protocol!r}')
    if checkpoint.parent.name != key or checkpoint.name != f'iter_{iters}.pth':
        wrong.append(f'checkpoint {checkpoint} where the cell\'s pretraining ended at {key}/iter_{iters}.pth')
    hparams = evaluation.get('hparams') or {}
    for setting, value in cfg.to_dict().items():
        if setting in _RUNTIME_KEYS:
            continue
        field = _HPARAM_NAMES.get(setting, setting)
        if field not in hparams:
            wrong.append(f'no {field} in its hparams')
        elif json.dumps(hparams[field], default=str, sort_keys=True) != json.dumps(value, default=str, sort_keys=True):
            wrong.append(f'{field} {hparams[field]!r} where the recipe has {value!r}')
    if not evaluation.get('data'):
        wrong.append('no data sizes')
    elif why := wrong_data(scale, evaluation):
        wrong.append(why)
    if wrong:
        raise AblationError(f'{path} is not column {name!r} of cell {record["label"]} seed {record["seed"]} under '
                            f'the present recipe: {"; ".join(wrong)}')
    held = record['metrics'].get(name)
    if held and held.get('eval_hash') in current_eval_hashes(scale)[name]:
        raise AblationError(f'cell {record["label"]} seed {record["seed"]} already has column {name!r} under the '
                            f'present recipe ({held["accuracy"]}%): one result a column')
    metrics = dict(record['metrics'])
    metrics[name] = dict(accuracy=evaluation['accuracy'], wall_time_s=evaluation.get('wall_time_s'),
                         eval_hash=digest, code_version=None,
                         adopted=dict(record=str(path), checkpoint_sha256=evaluation.get('checkpoint_sha256'),
                                      created=evaluation.get('created'), host=evaluation.get('host')))
    record = dict(record, metrics=metrics)
    store.put(record)
    return record


def _same_weights(record: dict, checkpoint: str | None) -> bool:
    """Whether an evaluation record of the cell's work dir is of ``checkpoint``'s weights. By content: a cell
    retrained in place writes new weights under the same path, and a work dir moved whole keeps its weights
    under another. None (a random initialization) is the cell's own config and seed, as the work dir is."""
    from mimbench.evaluation.encoder import file_sha256
    if checkpoint is None:
        return record.get('checkpoint') is None
    return record.get('checkpoint_sha256') == file_sha256(checkpoint)


def prefetch_features(cell: Cell, scale: Scale, work_dir: Path, checkpoint: str | None, names: list[str], *,
                      data_root: str | None = None, log: Log = print) -> list[str]:
    """Extract, in one pass per split, every pooling that the probe columns ``names`` need ([cls], mean,
    tokens), into the cell's feature cache, where each evaluation then finds its own. Extraction is most of a
    probe's time, and separate columns would otherwise repeat it. Returns the poolings extracted together."""
    from mimbench.evaluation.encoder import load_encoder
    from mimbench.evaluation.features import FeatureCache, cached_features
    from mimbench.evaluation.optim import torch_threads
    from mimbench.evaluation.run import build_split
    groups: dict[str, tuple] = {}
    for name in names:
        protocol, cfg, _ = eval_config(scale, name)
        if protocol == 'finetune':
            continue
        same_pass = json.dumps([cfg.data.to_dict(), cfg.get('extract', {})], sort_keys=True, default=str)
        groups.setdefault(same_pass, (cfg, set()))[1].add(cfg.pool)
    groups = {k: v for k, v in groups.items() if len(v[1]) > 1}
    if not groups:
        return []
    loaded = (load_encoder(checkpoint) if checkpoint else
              load_encoder(None, str(write_cell_config(cell, work_dir)), seed=cell.seed))
    loaded.encoder.to(resolve_device('auto'))     # where evaluate() will look for them
    cache = FeatureCache(work_dir / 'features')
    done = []
    for cfg, pools in groups.values():
        ext = dict(cfg.get('extract', {}))
        threads = ext.pop('threads', None)
        log(f'  {cell.name}: extracting {"/".join(sorted(pools))} features in one pass')
        for split in ('train', 'test'):
            with torch_threads(threads):
                cached_features(loaded, build_split(cfg, split, data_root), split, sorted(pools), cache, **ext)
        done += sorted(pools)
    return done


def missing_evaluations(record: dict | None, scale: Scale, evaluations: list[str]) -> list[str]:
    """The evaluation columns a cell's record lacks, or holds from another eval config."""
    have = (record or {}).get('metrics', {})
    return [n for n in evaluations if n not in have or have[n].get('eval_hash') != eval_config(scale, n)[2]]


def _portable(summary: dict | None) -> dict | None:
    """The pretraining summary with its checkpoint path relative to the working directory when it lies
    below it: store records are committed and read on other machines."""
    if not summary or not summary.get('checkpoint'):
        return summary
    path = Path(summary['checkpoint'])
    try:
        return dict(summary, checkpoint=str(path.resolve().relative_to(Path.cwd().resolve())))
    except ValueError:
        return summary


def cell_flops(cell: Cell) -> dict:
    """GFLOPs per image of one pretraining step of the cell's model: ``train``, ``forward``, ``encoder``."""
    import torch

    from mimbench.analysis import algorithm_flops
    from mimbench.registry import MODELS
    cfg = cell.config()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    return {k: round(v, 6) for k, v in algorithm_flops(model, cfg.model.encoder.img_size).items()}


def run_cell(cell: Cell, scale: Scale, store: ResultStore, work_root: str | os.PathLike, evaluations: list[str], *,
             data_root: str | None = None, stream: bool = True, log: Log = print) -> dict:
    """Run whatever the cell still lacks and return its store record."""
    record = find_record(store, cell)
    if not missing_evaluations(record, scale, evaluations):
        return record
    work_dir = cell_work_dir(work_root, cell)
    work_dir.mkdir(parents=True, exist_ok=True)
    with cell_lock(work_dir):
        return _run_cell(cell, scale, store, work_dir, evaluations, record, data_root=data_root, stream=stream,
                         log=log)


def _run_cell(cell, scale, store, work_dir, evaluations, record, *, data_root, stream, log) -> dict:
    start = time.perf_counter()
    # the key vouches for the pinned files this cell reads: it must read those, nothing else
    ensure_artifacts(scale, store, paths=weight_files(cell.config()), log=log)
    if record is not None and cell.value.pretrain and not (work_dir / 'pretrain.json').exists():
        # pretraining again would mix metrics of two different runs in one record
        raise CellFailed(f'{cell.name} has results in the store but its work dir {work_dir} is gone: move the '
                         f'work dir back, or delete {store.path(cell.key)} to run the cell again from scratch')
    summary = pretrain(cell, scale, work_dir, data_root=data_root, stream=stream, log=log) \
        if cell.value.pretrain else None
    check_trained_iterations(cell, scale, summary)
    checkpoint = summary['checkpoint'] if summary else None
    metrics = dict(record['metrics']) if record else {}
    missing = missing_evaluations(record, scale, evaluations)
    extract_start = time.perf_counter()
    try:
        prefetch_features(cell, scale, work_dir, checkpoint, missing, data_root=data_root, log=log)
    except Exception as err:   # noqa: BLE001 - as for an evaluation: this cell fails, the sweep goes on
        raise CellFailed(f'feature extraction for {cell.name} failed: {type(err).__name__}: {err}') from err
    # the shared extraction is in no evaluation's own wall time; the record keeps it for the cost columns
    extract_s = time.perf_counter() - extract_start + (record or {}).get('extract_seconds', 0.0)
    for name in missing:
        log(f'  {cell.name}: evaluating {name}')
        progress = evaluation_progress(log, f'{cell.name}: {name}') if stream else (lambda msg: None)
        result = evaluate_cell(cell, scale, work_dir, name, checkpoint, data_root=data_root, log=progress)
        # per column: a column added to a finished cell runs on newer code than the record's other columns
        metrics[name] = dict(accuracy=result['accuracy'], wall_time_s=result['wall_time_s'],
                             eval_hash=result['eval_hash'], code_version=code_version())
        log(f'  {cell.name}: {name} top-1 {result["accuracy"]:.2f}% ({result["wall_time_s"]:.0f} s)')
    cfg = cell.config()
    record = dict(
        key=cell.key, scale=cell.scale, axis=cell.axis, value=cell.value.key, label=cell.value.label,
        method=cell.value.method, seed=cell.seed, pretrained=cell.value.pretrain, max_iters=cell.max_iters,
        config=config_name(cell.config_path),
        options=cell.options, config_text=cfg.pretty_text,
        pretrain=_portable(summary), metrics=metrics, extract_seconds=round(extract_s, 1),
        flops_gflops_per_img=cell_flops(cell), code_version=code_version(),
        weight_files={path: store.keep_file(repo_path(path)) for path in weight_files(cfg)},
        host=host_info(),
        finished=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        driver_seconds=round(time.perf_counter() - start, 1) + (record or {}).get('driver_seconds', 0.0))
    store.put(record)
    return record
