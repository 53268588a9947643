"""One call per evaluation: load the encoder, get the data and features, run the protocol, write the record.

``tools/eval.py`` is a thin command line over :func:`evaluate` and :func:`benchmark`.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from mmengine.config import Config

from mimbench.config_files import read_config
from mimbench.data import cache_dir as user_cache_dir
from mimbench.evaluation.attentive import attentive_probe
from mimbench.evaluation.encoder import LoadedEncoder, load_encoder
from mimbench.evaluation.features import FeatureCache, cached_features, extract_features
from mimbench.evaluation.finetune import finetune, train_pipeline
from mimbench.evaluation.knn import knn_accuracy
from mimbench.evaluation.linear import linear_probe
from mimbench.evaluation.optim import busy_note, torch_threads
from mimbench.evaluation.records import make_record, write_record
from mimbench.engine.dist import launch_rank
from mimbench.errors import MimbenchError
from mimbench.machine import device_name, resolve_device
from mimbench.overrides import Reader, apply_overrides
from mimbench.paths import configs_dir, resolve_config
from mimbench.registry import DATASETS

PROTOCOLS = ('linear', 'attentive', 'knn', 'finetune')
Log = Callable[[str], None]
# The top-level keys each protocol reads with a default: an eval config may lack them, and an override may add
# them. Every other key an override sets must already be in the config (see eval_reader).
OPTIONAL_KEYS = dict(
    knn=('extract',),
    linear=('extract', 'threads'),
    attentive=('extract', 'threads', 'num_heads', 'token_dtype'),
    finetune=('threads', 'rand_augment', 'clip_grad', 'amp', 'num_workers', 'log_interval', 'checkpoint_interval'),
)


def eval_reader(protocol: str) -> Reader:
    """What the ``protocol`` evaluation reads from its eval config besides its parts (datasets, optimizer), so
    that a misspelled ``--cfg-options`` key is refused before any work: the optional top-level keys, and the
    keys of ``data`` and ``extract``."""
    return Reader(name=f'the {protocol} evaluation', top_level=frozenset(OPTIONAL_KEYS[protocol]),
                  entries=dict(data=frozenset({'train', 'test', 'num_classes'}),
                               extract=frozenset({'batch_size', 'dtype', 'num_workers', 'threads'})))


class EvalConfigError(MimbenchError, ValueError):
    """An eval config for another protocol than the one asked for."""


def _quiet(_: str) -> None:
    pass


def default_eval_config(protocol: str) -> str:
    """``configs/eval/<protocol>_micro.py``: the micro recipe of each protocol."""
    return str(configs_dir() / 'eval' / f'{protocol}_micro.py')


def load_eval_config(protocol: str, path: str | None = None, options: dict | None = None) -> Config:
    """The protocol's eval config (``path`` or the micro default) with ``--cfg-options`` style overrides.

    A key the evaluation would not read raises :class:`~mimbench.overrides.UnknownKeyError` naming the closest
    valid one (see :func:`eval_reader`).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    path = resolve_config(path) if path else default_eval_config(protocol)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'eval config {path} does not exist')
    cfg = read_config(path)
    if options:
        apply_overrides(cfg, dict(options), reader=eval_reader(protocol))
    if cfg.get('protocol') != protocol:
        raise EvalConfigError(f"eval config {path} is for protocol {cfg.get('protocol')!r}, not {protocol!r}")
    return cfg


def build_split(eval_cfg: Config, split: str, data_root: str | None = None, pipeline=None):
    """The dataset of ``eval_cfg.data[split]`` ('train' or 'test'), optionally at ``data_root`` and with
    another per-sample ``pipeline``."""
    ds_cfg = dict(eval_cfg.data[split])
    if data_root:
        ds_cfg['root'] = data_root
    if pipeline is not None:
        ds_cfg['pipeline'] = pipeline
    return DATASETS.build(ds_cfg)


def _load(checkpoint, scratch, config, seed, **overrides) -> LoadedEncoder:
    if (checkpoint is None) == (scratch is None):
        raise ValueError('give exactly one of a checkpoint and --scratch CONFIG')
    if scratch is not None:
        return load_encoder(None, scratch, seed=seed, **overrides)
    return load_encoder(checkpoint, config, seed=seed, **overrides)


def default_cache_dir(loaded: LoadedEncoder) -> Path:
    """Next to the checkpoint (``<work dir>/features``); random inits in the user cache."""
    if loaded.checkpoint is not None:
        return Path(loaded.checkpoint).parent / 'features'
    return user_cache_dir() / 'features'


def default_out(loaded: LoadedEncoder, protocol: str, seed: int) -> Path:
    """``<work dir>/eval/<protocol>_<checkpoint stem>_seed<seed>.json``; random inits under
    ``work_dirs/<config name>/eval/``."""
    base = (Path(loaded.checkpoint).parent if loaded.checkpoint is not None
            else Path('work_dirs') / loaded.config_name)
    tag = loaded.name if loaded.checkpoint is not None else ('scratch' if protocol == 'finetune' else 'random')
    return base / 'eval' / f'{protocol}_{tag}_seed{seed}.json'


def _num_heads(encoder) -> int:
    return encoder.blocks[0].attn.num_heads


def run_protocol(protocol: str, c: Config, train, test, encoder, seed: int, log: Log = _quiet,
                 device: torch.device | str = 'cpu') -> tuple[float, dict]:
    """kNN, linear or attentive on already extracted features, on ``device``: returns (top-1 %, hparams incl.
    seconds)."""
    num_classes = c.data.num_classes
    if protocol == 'knn':
        start = time.perf_counter()
        top1 = knn_accuracy(train, test, num_classes, k=c.k, temperature=c.temperature, device=device)
        return top1, dict(k=c.k, temperature=c.temperature, seconds=time.perf_counter() - start)
    common = dict(epochs=c.epochs, batch_size=c.batch_size, base_lr=c.base_lr, warmup_epochs=c.warmup_epochs,
                  optimizer=dict(c.optimizer), seed=seed, threads=c.get('threads', 1), device=device, log=log)
    if protocol == 'linear':
        result = linear_probe(train, test, num_classes, **common)
    else:
        result = attentive_probe(train, test, num_classes, num_heads=c.get('num_heads') or _num_heads(encoder),
                                 token_dtype=c.get('token_dtype', 'auto'), **common)
    return result.accuracy, dict(result.hparams, seconds=result.seconds)


def run_probe(protocol: str, loaded: LoadedEncoder, eval_cfg: Config, *, data_root: str | None = None,
              seed: int = 0, cache: FeatureCache | None = None, log: Log = _quiet) -> tuple[float, dict, dict]:
    """Linear, attentive or kNN evaluation on cached features: returns (top-1 %, hparams, extra fields)."""
    pool = eval_cfg.pool
    ext = dict(eval_cfg.get('extract', {}))
    extract_threads = ext.pop('threads', None)
    feats, reports = {}, {}
    note = busy_note(extract_threads, 'extract.threads')
    if note:
        log(note)
    for split in ('train', 'test'):
        ds = build_split(eval_cfg, split, data_root)
        with torch_threads(extract_threads):
            got, reports[split] = cached_features(loaded, ds, split, [pool], cache, log=log, **ext)
        feats[split] = got[pool]
        if reports[split]['cache_hits']:
            log(f'{split} features from cache: {reports[split]["files"][pool]}')
    train, test = feats['train'], feats['test']
    log(f'{protocol} on {len(train)} x {tuple(train.features.shape[1:])} features')
    device = next(loaded.encoder.parameters()).device
    top1, hparams = run_protocol(protocol, eval_cfg, train, test, loaded.encoder, seed, log, device)
    hparams.update(pool=pool, extract=dict(ext, threads=extract_threads))
    extra = dict(data=dict(train=len(train), test=len(test)),
                 features={s: dict(cache_hits=r['cache_hits'], extracted=r['extracted'],
                                   seconds=round(r['seconds'], 2), dtype=r['dtype']) for s, r in reports.items()})
    return top1, hparams, extra


def run_finetune(loaded: LoadedEncoder, eval_cfg: Config, *, data_root: str | None = None, seed: int = 0,
                 max_iters: int | None = None, work_dir: str | None = None, launcher: str = 'none',
                 log: Log = _quiet) -> tuple[float, dict, dict]:
    """Fine-tune (or train from scratch) and test: returns (top-1 %, hparams, extra fields). Checkpoints go to
    ``work_dir``, from which a killed run resumes when called again."""
    c = eval_cfg
    note = busy_note(c.get('threads'))
    if note:
        log(note)
    augment = train_pipeline(c.train_pipeline, c.get('rand_augment'))
    train_set = build_split(c, 'train', data_root, pipeline=augment)
    test_set = build_split(c, 'test', data_root)
    log(f'fine-tuning on {len(train_set)} images, testing on {len(test_set)}')
    with torch_threads(c.get('threads')):
        result = _finetune(loaded, c, train_set, test_set, seed, max_iters, work_dir, launcher, log)
    hparams = dict(result.hparams, rand_augment=c.get('rand_augment'), train_pipeline=c.train_pipeline,
                   threads=c.get('threads'))
    return result.accuracy, hparams, dict(data=dict(train=len(train_set), test=len(test_set)))


def _finetune(loaded, c, train_set, test_set, seed, max_iters, work_dir, launcher, log):
    return finetune(
        loaded.encoder, loaded.preprocessor, train_set, test_set, c.data.num_classes, epochs=c.epochs,
        batch_size=c.batch_size, base_lr=c.base_lr, layer_decay=c.layer_decay, weight_decay=c.weight_decay,
        betas=c.betas, warmup_epochs=c.warmup_epochs, pool=c.pool, label_smoothing=c.label_smoothing,
        mixup=c.mixup, cutmix=c.cutmix, mixup_prob=c.mixup_prob, mixup_switch_prob=c.mixup_switch_prob,
        random_erasing=c.random_erasing, clip_grad=c.get('clip_grad'), amp=c.get('amp', False),
        num_workers=c.get('num_workers', 0), seed=seed, max_iters=max_iters,
        log_interval=c.get('log_interval', 50), device=next(loaded.encoder.parameters()).device,
        work_dir=work_dir, checkpoint_interval=c.get('checkpoint_interval', 500), identity=loaded.identity,
        launcher=launcher, log=log)


def evaluate(protocol: str, checkpoint: str | None = None, *, scratch: str | None = None,
             config: str | None = None, eval_cfg: Config | None = None, data_root: str | None = None,
             seed: int = 0, cache_dir: str | None = None, out: str | None = None, max_iters: int | None = None,
             device: str | torch.device = 'auto', launcher: str = 'none', log: Log = _quiet) -> dict:
    """Evaluate ``checkpoint`` (or a random init of the ``scratch`` config) with ``protocol`` on ``device``
    ('auto': the GPU when there is one; extraction, probes, kNN and fine-tuning all run there).
    ``launcher='pytorch'`` (under torchrun): fine-tuning trains data-parallel across the processes (each GPU
    its own, gloo on CPU), and rank 0 writes the record.

    Writes the JSON record to ``out`` (default :func:`default_out`) and returns it; ``record['out']`` is
    where it went.
    """
    start = time.perf_counter()
    if launcher != 'none' and protocol != 'finetune':
        raise EvalConfigError(f'--launcher {launcher}: only fine-tuning trains across processes; the probes '
                              f'train on cached features in one process')
    if launcher != 'none' and torch.cuda.is_available():
        device = f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}'   # one GPU per process
    device = resolve_device(device)
    eval_cfg = eval_cfg if eval_cfg is not None else load_eval_config(protocol)
    overrides = dict(drop_path_rate=eval_cfg.drop_path) if protocol == 'finetune' else {}
    loaded = _load(checkpoint, scratch, config, seed, **overrides)
    loaded.encoder.to(device)
    loaded.preprocessor.to(device)
    log(f'{protocol} evaluation of {loaded.checkpoint or f"a random init of {scratch} (seed {seed})"}')
    out = Path(out or default_out(loaded, protocol, seed))
    if protocol == 'finetune':
        # beside the record: the run's checkpoints, from which a killed fine-tuning resumes
        top1, hparams, extra = run_finetune(loaded, eval_cfg, data_root=data_root, seed=seed, max_iters=max_iters,
                                            work_dir=str(out.with_name(out.stem + '_run')), launcher=launcher,
                                            log=log)
    else:
        cache = FeatureCache(cache_dir or default_cache_dir(loaded))
        top1, hparams, extra = run_probe(protocol, loaded, eval_cfg, data_root=data_root, seed=seed, cache=cache,
                                         log=log)
    record = make_record(protocol=protocol, loaded=loaded, seed=seed, accuracy=top1,
                         wall_time_s=time.perf_counter() - start, hparams=hparams,
                         eval_config=eval_cfg.filename, device=device_name(device), **extra)
    if launch_rank(launcher) == 0:
        write_record(record, out)
    record['out'] = str(out)
    return record


def benchmark(checkpoint: str | None = None, *, scratch: str | None = None, config: str | None = None,
              data_root: str | None = None, seed: int = 0, dtypes: tuple[str, ...] = ('bfloat16', 'float32'),
              device: str | torch.device = 'auto', log: Log = print) -> dict:
    """Time what a researcher repeats, with the micro configs' settings: extracting the features of both
    CIFAR-10 splits (all three poolings from one pass, no cache) in each of ``dtypes``, then the linear,
    attentive and kNN protocols on those features. Returns seconds per step and the machine's load, which
    says whether the figures were taken on an idle machine."""
    device = resolve_device(device)
    loaded = _load(checkpoint, scratch, config, seed)
    loaded.encoder.to(device)
    loaded.preprocessor.to(device)
    cfgs = {p: load_eval_config(p) for p in ('linear', 'attentive', 'knn')}
    ext = dict(cfgs['linear'].extract)
    times: dict[str, float] = {}
    load_before = os.getloadavg() if hasattr(os, 'getloadavg') else None
    t = time.perf_counter()
    splits = {s: build_split(cfgs['linear'], s, data_root) for s in ('train', 'test')}
    times['load data'] = time.perf_counter() - t
    n = sum(len(ds) for ds in splits.values())
    feats = {}
    for dtype in dtypes:
        t = time.perf_counter()
        with torch_threads(ext.get('threads')):
            for split, ds in splits.items():
                out = extract_features(loaded.encoder, loaded.preprocessor, ds, ('cls', 'mean', 'tokens'),
                                       batch_size=ext['batch_size'], dtype=dtype, log=log)
                feats.setdefault(split, out)      # the probes run on the first precision's features
        key = f'extract {n} images, cls+mean+tokens ({dtype})'
        times[key] = time.perf_counter() - t
        log(f'{key}: {times[key]:.1f} s ({n / times[key]:.0f} img/s)')
    top1, probes_s = {}, 0.0
    # the default evaluations of a micro ablation cell: lin, lin_mean, att, knn
    for protocol, pool in (('linear', 'cls'), ('linear', 'mean'), ('attentive', 'tokens'), ('knn', 'cls')):
        c = cfgs[protocol]
        train, test = feats['train'][pool], feats['test'][pool]
        t = time.perf_counter()
        name = f'{protocol} ({pool})'
        top1[name], _ = run_protocol(protocol, c, train, test, loaded.encoder, seed, log, device)
        key = f'{protocol} ({pool}, {c.get("epochs", "-")} epochs)'
        times[key] = time.perf_counter() - t
        probes_s += times[key]
        log(f'{key}: top-1 {top1[name]:.2f}% in {times[key]:.1f} s')
    first = f'extract {n} images, cls+mean+tokens ({dtypes[0]})'
    times[f'a cell\'s default evaluations: extraction in {dtypes[0]} + the four protocols'] = times[first] + probes_s
    return dict(times={k: round(v, 1) for k, v in times.items()}, top1=top1, device=device_name(device),
                torch_threads=torch.get_num_threads(),
                cpus=os.cpu_count(), loadavg_before=load_before,
                loadavg_after=os.getloadavg() if hasattr(os, 'getloadavg') else None,
                date=time.strftime('%Y-%m-%d %H:%M %Z'))
