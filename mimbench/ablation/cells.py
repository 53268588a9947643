"""Scales and cells: a scale (``configs/ablation/<scale>.py``) says which pretraining configs, budget and
evaluations an ablation uses; a cell is one axis value at one seed, resolved to a full pretraining config.

A cell's key is the hash of its resolved config (data locations and work dirs left out) and its seed, so two
axes that reach the same config share one run, and a changed base config never reuses stale results.
"""
from __future__ import annotations

from copy import deepcopy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmengine.config import Config

from mimbench.ablation.axes import AblationError, Axis, AxisValue, ScaleContext, get_axis
from mimbench.config_files import read_config
from mimbench.engine.runner import load_config
from mimbench.fileio import copy_once
from mimbench.paths import CHECKOUT, configs_dir, in_checkout, resolve_config

REPO = CHECKOUT
# Keys that say where things are, not what is computed: left out of a cell's identity. A tokenizer checkpoint
# is a location too, but what it holds matters: it enters the identity by content (see config_identity), and so
# does a fitted PCA basis.
_LOCATION_KEYS = {'root', 'data_root', 'work_dir', 'resume', 'load_from', 'launcher', 'basis_file', 'checkpoint',
                  'filename'}
_CONTENT_KEYS = {'checkpoint', 'basis_file'}
# Keys that say how a run is watched or fed, not what it learns: also left out, so that a user who logs more
# often or gives the loader more workers on their machine keeps their results. (Loader workers draw the
# augmentations from other random streams: a rerun with another worker count is another sample of the same
# cell, not a bit-identical copy; the record keeps the config it ran with.)
_RUNTIME_KEYS = {'env_cfg', 'log_processor', 'visualizer', 'log_level', 'num_workers', 'persistent_workers',
                 'pin_memory', 'prefetch_factor'}
# Hooks that only watch or save (logging, timing, checkpoints, throughput, wall clock), in default_hooks or
# custom_hooks. Every other hook stays in the identity, settings and all: the lr scheduler hook (set to None it
# would leave the lr unscheduled), an EMA hook, the CAE teacher's momentum hook.
_OBSERVER_HOOKS = {'LoggerHook', 'IterTimerHook', 'CheckpointHook', 'RuntimeInfoHook', 'ThroughputHook',
                   'TrainClockHook'}


def repo_path(path: str) -> str:
    """``path`` as given when it exists from here; ``configs/...`` in the configs the package uses
    (:func:`mimbench.paths.resolve_config`); anything else relative to the checkout the package runs from (an
    installed package: to the working directory). Configs name paths as seen from a checkout's root."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    if path.startswith('configs/'):
        return resolve_config(path)
    return str(REPO / path) if in_checkout() else path


def load_named_config(name_or_path: str, folder: Path, kind: str, kinds: str) -> Config:
    """``<folder>/<name>.py`` (or a config file's path); an unknown name raises :class:`AblationError` listing
    the valid names (``kind``/``kinds``: 'scale'/'scales', for the message)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f'{name_or_path}.py'
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob('*.py'))
        raise AblationError(f"unknown {kind} {name_or_path!r}; valid {kinds}: {', '.join(known)} "
                            f'(or the path of a {kind} config)')
    return read_config(path)


@dataclass
class Scale:
    """A loaded ``configs/ablation/<name>.py``."""
    name: str
    cfg: Config

    @classmethod
    def load(cls, name_or_path: str) -> Scale:
        cfg = load_named_config(name_or_path, configs_dir() / 'ablation', 'scale', 'scales')
        return cls(cfg.scale, cfg)

    def method_config(self, method: str) -> str:
        methods = self.cfg.methods
        if method not in methods:
            raise AblationError(f"scale {self.name!r} has no method {method!r}; it has {', '.join(methods)}")
        return repo_path(methods[method])

    def base_options(self, method: str) -> dict:
        return {**dict(self.cfg.get('method_options', {}).get(method, {})), **dict(self.cfg.pretrain_options)}

    def context(self) -> ScaleContext:
        cfg = load_config(self.method_config('mae'), self.base_options('mae'))
        enc = cfg.model.encoder
        img, patch = enc.img_size, enc.patch_size
        return ScaleContext(img_size=img, grid=(img // patch, img // patch), embed_dim=_encoder_width(cfg))

    @property
    def artifacts(self) -> dict[str, str]:
        """Weight files pinned by content: configured path -> sha256[:16] (the scale config's ``artifacts``).
        A pinned file enters a cell's key by the pin, not by reading it; see :func:`ensure_artifacts`."""
        return {str(k): str(v) for k, v in (self.cfg.get('artifacts') or {}).items()}

    def evaluation(self, name: str) -> dict:
        evals = self.cfg.evaluations
        if name not in evals:
            raise AblationError(f"scale {self.name!r} has no evaluation {name!r}; it has {', '.join(evals)}")
        return dict(evals[name])


def _encoder_width(cfg: Config) -> int:
    from mimbench.models.vit import ARCHS   # the arch table gives widths without building a model
    enc = cfg.model.encoder
    return enc.get('embed_dim') or ARCHS[enc.get('arch', 'base')][0]


@dataclass
class Cell:
    """One pretraining run (or, for ``pretrain=False``, a random init) and its evaluations."""
    axis: str
    value: AxisValue
    seed: int
    scale: str
    config_path: str
    options: dict = field(default_factory=dict)
    max_iters: int | None = None
    key: str = ''

    @property
    def name(self) -> str:
        return f'{self.axis}={self.value.key} seed {self.seed}'

    def config(self) -> Config:
        """The resolved pretraining config of this cell (a fresh copy each call)."""
        return load_config(self.config_path, self.options)


def _content_hash(path) -> str | None:
    path = repo_path(str(path))
    if not os.path.isfile(path):
        return None
    from mimbench.evaluation.encoder import file_sha256
    return file_sha256(path)[:16]


def identity_version(type_name) -> int:
    """The behaviour version of the registered class a config's ``type`` names (its ``identity_version``
    attribute; 1 when it has none or the name is not one of ours).

    A cell's key hashes its config, which cannot show a change inside a component's code. A class whose
    behaviour changes on purpose raises its ``identity_version``, and every cell that uses it gets a new key,
    so records made by the old code never mix with new ones in a table."""
    from mmengine.registry import Registry

    from mimbench import registry
    if not isinstance(type_name, str):
        type_name = getattr(type_name, '__name__', None)
        if type_name is None:
            return 1
    # every registry of ours (samplers and optim wrappers too), not mmengine's parents it imports: a name both
    # register (CheckpointHook) is ours in a config
    ours = [reg for reg in vars(registry).values() if isinstance(reg, Registry) and reg.scope == registry.SCOPE]
    for reg in ours:
        if (cls := reg.module_dict.get(type_name)) is not None:
            return int(getattr(cls, 'identity_version', 1))
    return 1


def _run_parts() -> dict:
    """The classes a run switch puts in place after the config (tools/train.py), which the config therefore
    cannot name: their ``identity_version`` joins the key beside the switch."""
    from mimbench.data.device import DeviceBatchLoader
    from mimbench.engine.optim import AutocastOptimWrapper
    return {'amp': AutocastOptimWrapper, 'device_data': DeviceBatchLoader}


def config_identity(cfg: Config, content: dict[str, str] | None = None) -> dict:
    """``cfg`` as plain data without location and runtime keys: what the cell computes, not where or how it is
    watched. Files a config reads weights from (a tokenizer checkpoint, a PCA basis) are represented by a hash
    of their content (``content``: configured path -> hash, for files known by their hash, not read here); a
    part whose class has an ``identity_version`` above 1 carries it (see :func:`identity_version`), so parts
    at version 1 keep the keys they always had."""
    content = content or {}

    def strip(obj):
        if isinstance(obj, dict):
            out = {k: strip(v) for k, v in obj.items() if k not in _LOCATION_KEYS | _RUNTIME_KEYS}
            for k in _CONTENT_KEYS & obj.keys():
                if isinstance(obj[k], str):
                    out[f'{k}_sha256'] = content.get(obj[k]) or _content_hash(obj[k])
            if 'type' in obj and (version := identity_version(obj['type'])) > 1:
                out['identity_version'] = version
            return out
        if isinstance(obj, (list, tuple)):
            return [strip(v) for v in obj]
        return obj
    data = cfg.to_dict()
    if isinstance(data.get('default_hooks'), dict):
        data['default_hooks'] = {k: h for k, h in data['default_hooks'].items() if not _is_observer(h)}
    data['custom_hooks'] = [h for h in data.get('custom_hooks') or [] if not _is_observer(h)]   # None = none
    return strip(data)


def _is_observer(hook) -> bool:
    kind = hook.get('type') if isinstance(hook, dict) else None
    return getattr(kind, '__name__', kind) in _OBSERVER_HOOKS


def cell_key(cfg: Config, seed: int, pretrain: bool = True, content: dict[str, str] | None = None, **run) -> str:
    """16 hex digits of sha256 over the config's identity, the seed and how it is run (``run``: e.g.
    ``amp=True`` or ``max_iters=20``; None/False entries are left out, so default runs keep their keys).
    ``content`` gives weight files by their hash (see :func:`config_identity`)."""
    ident = dict(config=config_identity(cfg, content), seed=seed, pretrain=pretrain)
    ident.update({k: v for k, v in run.items() if v not in (None, False)})
    for switch, cls in _run_parts().items():
        if run.get(switch) and (version := int(getattr(cls, 'identity_version', 1))) > 1:
            ident[f'{switch}_identity_version'] = version
    blob = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_cell(scale: Scale, axis: Axis, value: AxisValue, seed: int, max_iters: int | None = None) -> Cell:
    """The cell of ``value`` at ``seed``; ``max_iters`` (smoke runs) makes it a different cell, so a shortened
    run never stands in for the full one."""
    options = {**scale.base_options(value.method), **value.overrides}
    cell = Cell(axis.name, value, seed, scale.name, scale.method_config(value.method), options, max_iters=max_iters)
    cell.key = cell_key(cell.config(), seed, value.pretrain, content=scale.artifacts,
                        amp=bool(scale.cfg.get('amp')), max_iters=max_iters,
                        device_data=bool(scale.cfg.get('device_data')),
                        # the batch a config sets is per process: more of them is a larger batch and lr
                        world_size=gpus if (gpus := int(scale.cfg.get('gpus_per_cell', 1))) > 1 else None)
    return cell


def expand(scale: Scale, axis_names: list[str], seeds: int | list[int], values: list[str] | None = None,
           max_iters: int | None = None) -> list[Cell]:
    """The cells of ``axis_names`` at ``seeds`` (a count or a list), one per distinct key, in table order.

    ``values`` (keys or, on numeric axes, numbers) replaces the axis's own rows; with several axes it is an
    error, since values belong to one axis.
    """
    if values and len(axis_names) > 1:
        raise AblationError(f'--values needs a single axis; got {", ".join(axis_names)} (a group such as '
                            f'"decoder" is several axes: name one, e.g. --axis {axis_names[0]})')
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    ctx = scale.context()
    cells, seen = [], set()
    for name in axis_names:
        axis = get_axis(name)
        for value in axis.values(ctx, values):
            for seed in seed_list:
                cell = make_cell(scale, axis, value, seed, max_iters)
                if cell.key not in seen:
                    seen.add(cell.key)
                    cells.append(cell)
    return cells


def _weight_file_entries(obj) -> list[tuple[dict, str]]:
    """Every ``(dict, key)`` of a nested config whose key names a weight file (``_CONTENT_KEYS``) by a string."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in _CONTENT_KEYS and isinstance(v, str):
                found.append((obj, k))
            found += _weight_file_entries(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found += _weight_file_entries(v)
    return found


def weight_files(cfg: Config) -> list[str]:
    """The weight files the config reads (its string ``checkpoint`` keys, e.g. a tokenizer), as written there."""
    return [entry[key] for entry, key in _weight_file_entries(cfg.to_dict())]


def record_config(record: dict) -> Config | None:
    """The config a stored record ran with, from its ``config_text``; None for a record without one."""
    text = record.get('config_text')
    return Config.fromstring(text, '.py') if text else None


def record_weight_files(record: dict) -> list[str]:
    """The weight files a stored record's config reads (none for a record without its config text)."""
    cfg = record_config(record)
    return weight_files(cfg) if cfg is not None else []


def missing_weight_files(cfg: Config) -> list[str]:
    """The config's weight files that are not on this machine."""
    return [path for path in weight_files(cfg) if not os.path.isfile(repo_path(path))]


def restore_weight_files(store, log=print) -> list[str]:
    """Copy back the weight files the store's cells read (their records' ``weight_files``: configured path ->
    kept copy) that are missing here, as on a fresh clone, so that more seeds of a stored cell train with the
    very tokenizer its first seeds did, and stored cells match by content. A path with several kept versions
    is left alone with a note: which one to use is the user's choice. Returns the restored paths."""
    kept: dict[str, set[str]] = {}
    for record in store.records().values():
        for path, copy in ((record or {}).get('weight_files') or {}).items():
            kept.setdefault(path, set()).add(copy)
    restored = []
    for path, copies in sorted(kept.items()):
        if os.path.isfile(repo_path(path)):
            continue
        available = sorted(str(store.root / c) for c in copies if (store.root / c).is_file())
        if len(available) > 1:
            log(f'note: {path} is missing and the results store keeps {len(available)} versions of it '
                f'({", ".join(available)}); copy the one to use to {path}')
        elif available:
            copy_once(available[0], repo_path(path))
            log(f'restored {path} from the results store ({available[0]}): the file its stored cells read')
            restored.append(path)
    return restored


def fit_missing_bases(cells: list[Cell], data_root: str | None = None, log=print) -> list[str]:
    """Fit every PCA basis file the cells read that is not here yet, from each config's real training images
    (:func:`mimbench.targets.pca.fit_basis_file`), before their keys are final: a key hashes the basis's
    content, so it must exist before the cell runs. Pinned files are put in place first
    (:func:`ensure_artifacts`), so a pinned basis is never refitted. Returns the paths written (then recompute
    the keys)."""
    from mimbench.engine.runner import set_data_root
    from mimbench.targets.pca import fit_basis_file
    written = []
    for cell in cells:
        cfg = cell.config()
        if not any(not os.path.isfile(repo_path(p)) for p in weight_files(cfg)):
            continue
        if data_root:
            set_data_root(cfg, data_root)
        written += fit_basis_file(cfg, log=log)
    return written


def pinned_copy(scale: Scale, path: str, store=None) -> Path | None:
    """A results store's copy of the file ``scale`` pins at ``path`` (``files/<hash>.*``, its content checked
    against the pin): from ``store``, the stores beside it, then the checkout's ``docs/results/ablation/*``
    (scales that share a tokenizer share its pin); None when no store keeps one."""
    from mimbench.evaluation.encoder import file_sha256
    digest = scale.artifacts[path]
    roots = [store.root, *sorted(p for p in store.root.parent.glob('*') if p.is_dir() and p != store.root)] \
        if store is not None else []
    if in_checkout():
        roots += sorted((REPO / 'docs' / 'results' / 'ablation').glob('*'))
    return next((c for root in roots for c in sorted((root / 'files').glob(f'{digest}.*'))
                 if file_sha256(c)[:16] == digest), None)


def ensure_artifacts(scale: Scale, store, paths=None, log=print) -> list[str]:
    """Make the weight files the scale pins (``artifacts``; of them only ``paths``, the files some cells read,
    when given) hold their pinned content at their configured paths, before a cell reads them: a missing file is
    copied back from a results store that keeps it (:func:`pinned_copy`); a file with other content is refused,
    never used or replaced. Returns the paths restored."""
    wanted = None if paths is None else set(paths)
    restored = []
    for path, digest in scale.artifacts.items():
        if wanted is not None and path not in wanted:
            continue
        here = repo_path(path)
        if os.path.isfile(here):
            actual = _content_hash(path)
            if actual != digest:
                raise AblationError(
                    f'{path} holds {actual}, but scale {scale.name!r} pins {digest} (artifacts in its config): '
                    f'its cells were run with that file. Move {path} aside (the pinned file is then restored '
                    f'from the results store), or pin the new file\'s hash, which gives its cells new keys')
            continue
        copy = pinned_copy(scale, path, store)
        if copy is None:
            raise AblationError(f'{path} is missing, and no results store keeps the file scale {scale.name!r} '
                                f'pins (files/{digest}.* under {store.root.parent}'
                                + (' or docs/results/ablation' if in_checkout() else '')
                                + f'): copy that file, sha256 {digest}..., to {path}')
        copy_once(copy, here)
        log(f'restored {path} from {copy}: the file scale {scale.name!r} pins')
        restored.append(path)
    return restored


def readable_copy(cfg: Config, scale: Scale) -> Config:
    """``cfg`` with every pinned weight file that is missing here replaced by a store's copy of it (where one
    is kept), to build the model from without writing anything (``--dry-run`` on a fresh clone). A copy of a
    config: the cell's own config keeps its paths."""
    out = deepcopy(cfg)
    for entry, key in _weight_file_entries(out.model):
        path = entry[key]
        if path in scale.artifacts and not os.path.isfile(repo_path(path)):
            kept = pinned_copy(scale, path)
            if kept is not None:
                entry[key] = str(kept)
    return out


def find_record(records, cell: Cell) -> dict | None:
    """The stored record of ``cell``, from a ``ResultStore`` or a ``{key: record}`` dict; None if unrun.

    One lookup by key: a cell's key already says everything it computes, the content of the weight files it
    reads included (by the scale's pin, or by reading the file). A cell whose unpinned file is missing here
    has no content in its key and counts as unrun until the file is back (``restore_weight_files``)."""
    return records.get(cell.key)
