"""``--cfg-options`` overrides: a misspelled key is refused before anything runs, and a part's ``type`` can be
swapped from the command line.

mmengine merges any dotted key into a config. A misspelled one makes a new entry that nothing reads (the setting
is silently ignored) or that a part is handed only when it is built (a hook's argument: at the first checkpoint,
after training). :func:`apply_overrides` refuses such a key up front and names the closest valid one.

A key that sets something new (not in the config, under a replaced entry, or under a part whose ``type`` the
overrides change) is valid when the entry it is under takes it:

- a part (a dict with a ``type``) takes the arguments of its registered class's ``__init__``; a class that
  passes ``**kwargs`` on to its base takes the base's too, and one that keeps them for later takes anything;
- the Runner's entries without a ``type`` (dataloaders, ``randomness``, ``env_cfg``, ...) take what mmengine
  reads from them, ``default_hooks`` takes a new hook only as a whole part (``dict(type=...)``), and the top
  level takes what mmengine's Runner reads;
- any other dict without a ``type`` (``paramwise_cfg.custom_keys``, ``env_cfg.mp_cfg``) is free-form: there is
  nothing to check its keys against.

List indices (``train_dataloader.dataset.pipeline.0.size``) and ``_delete_`` work as in mmengine. Values that
are dicts or lists of parts are checked the same way, so an ablation axis's overrides are checked too.
"""
from __future__ import annotations

import copy
import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from mmengine.config import Config

from mimbench.errors import MimbenchError
from mimbench.registry import check_type

MISSING = object()
DELETE = '_delete_'

# Top-level entries that mmengine's Runner reads from the config itself rather than as __init__ arguments.
_RUNNER_CFG_KEYS = ('model_wrapper_cfg', 'compile', 'activation_checkpointing', 'efficient_conv_bn_eval',
                    'custom_imports')
# The hooks mmengine's Runner fills in for ``default_hooks`` (a new name must come as a whole hook config).
_DEFAULT_HOOK_NAMES = ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler', 'checkpoint')
# Arguments the builder of the top-level entry consumes before the part's class sees the rest.
_BUILDER_KEYS = {'optim_wrapper': ('optimizer', 'constructor', 'paramwise_cfg')}


class UnknownKeyError(MimbenchError, KeyError):
    """An override names a config key that nothing would read; the message names the closest valid key."""


@dataclass(frozen=True)
class Reader:
    """What reads a kind of config besides the classes its parts name: ``name`` (for messages), the ``top_level``
    entries it reads that a config may lack, and the keys it reads from ``entries`` that have no ``type`` (any
    other such entry is free-form)."""
    name: str
    top_level: frozenset[str]
    entries: dict[str, frozenset[str]]


@dataclass
class TypeSwap:
    """An override changed the ``type`` at ``path``: ``dropped`` are the old arguments the new type does not
    take, ``kept`` those it takes that the overrides do not set."""
    path: str
    old: object
    new: object
    dropped: dict
    kept: dict

    def note(self) -> str:
        def args(d):
            return ', '.join(f'{k}={v!r}' for k, v in d.items())
        parts = [f'dropped {args(self.dropped)} ({_name(self.new)} does not take '
                 f'{"it" if len(self.dropped) == 1 else "them"})'] if self.dropped else []
        if self.kept:
            parts.append(f'kept {", ".join(self.kept)}')
        return f'note: {self.path}.type {_name(self.old)} -> {_name(self.new)}: {"; ".join(parts)}'


def apply_overrides(cfg: Config, options: dict, log: Callable[[str], None] = print,
                    reader: Reader | None = None) -> list[TypeSwap]:
    """Check ``options`` (``--cfg-options`` style, dotted keys) against ``cfg`` and merge them in, in place.

    A key nothing would read raises :class:`UnknownKeyError` before ``cfg`` is touched (see the module's
    docstring for what counts as valid). When an override changes a part's ``type`` (``model.masker.type=
    GridMasker`` on a ``BlockMasker``), the old arguments the new class does not take are dropped, with one
    ``note:`` line each swap through ``log``; the old arguments it does take, and every argument given on the
    command line, are kept. That is what a researcher swapping a part means: ``optim_wrapper.optimizer.type=
    SGD`` keeps the tuned ``lr`` and ``weight_decay`` and drops AdamW's ``betas``, where mmengine would merge
    every old argument in and the build would fail with a raw ``TypeError``. ``_delete_`` still replaces an
    entry whole. Returns the swaps.

    ``reader`` says what reads the config outside its parts; by default mmengine's Runner (a training config).
    """
    reader = reader or runner_reader()
    tree = _tree(options)
    _check(cfg, None, tree, reader)                # structure first: mmengine's merge would fail less clearly
    swaps = _type_swaps(cfg, tree)
    trial = copy.deepcopy(cfg)
    _merge(trial, swaps, options)
    _check(cfg, trial, tree, reader)
    _merge(cfg, swaps, options)
    for swap in swaps:
        log(swap.note())
    return swaps


# ---------------------------------------------------------------------------------------- what a part takes

@functools.cache
def _registries() -> tuple:
    """Every registry a ``type`` may name: mimbench's (which also see their mmengine parents), then mmengine's."""
    import mmengine.registry as theirs
    from mmengine.registry import Registry

    import mimbench.registry as ours
    # ours first: a child finds its own names and its mmengine parent's (the parents, imported into
    # mimbench.registry under other names, do not know ours)
    found = [r for r in vars(ours).values() if isinstance(r, Registry) and r.scope == ours.SCOPE]
    found += [r for r in vars(theirs).values() if isinstance(r, Registry) and r not in found]
    return tuple(found)


def find_part(type_) -> tuple[object, object] | None:
    """``(registry, class or function)`` that a config's ``type`` names, or None when no registry knows it."""
    if not isinstance(type_, str):
        return (None, type_) if callable(type_) else None
    for registry in _registries():
        obj = registry.get(type_)
        if obj is not None:
            return registry, obj
    return None


@functools.cache
def accepted_args(obj) -> frozenset[str] | None:
    """The argument names a part's class (or function) takes from its config; None when it takes any."""
    from mmengine.hooks import CheckpointHook
    from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
    from torch import nn

    if not inspect.isclass(obj):
        try:
            params, takes_kwargs = _named_params(obj)
        except (TypeError, ValueError):     # no signature to read (a builtin)
            return None
        return None if takes_kwargs else params
    names: set[str] = set()
    if issubclass(obj, _ParamScheduler):
        names.add('convert_to_iter_based')          # read by mmengine's scheduler builder, not by __init__
    for klass in obj.__mro__:
        if klass in (object, nn.Module):
            return None      # **kwargs kept for later (e.g. EMAHook's, for the averaged model): anything goes
        init = vars(klass).get('__init__')
        if init is None:
            continue
        params, takes_kwargs = _named_params(init)
        names |= params
        # CheckpointHook hands its **kwargs to Runner.save_checkpoint together with every argument that takes:
        # no other name works, and a misspelled one would fail only at the first save
        if not takes_kwargs or klass is CheckpointHook:
            return frozenset(names)
    return None


def _named_params(func) -> tuple[frozenset[str], bool]:
    params = inspect.signature(func).parameters.values()
    named = frozenset(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)) - {'self'}
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


def _part_args(segs: list[str], type_) -> frozenset[str] | None:
    """What the part at ``segs`` takes when its type is ``type_``: None for anything, or an unknown type (the
    registry reports that when the part is built)."""
    found = find_part(type_)
    accepted = accepted_args(found[1]) if found else None
    if accepted is not None and len(segs) == 1 and segs[0] in _BUILDER_KEYS:
        accepted |= set(_BUILDER_KEYS[segs[0]])
    return accepted


@functools.cache
def runner_reader() -> Reader:
    """A training config's reader, mmengine's Runner: its ``__init__`` arguments at the top level, and what it
    reads from its entries that have no ``type``."""
    from mmengine.optim import OptimWrapper
    from mmengine.runner import LogProcessor, Runner
    from mmengine.visualization import Visualizer
    from torch.utils.data import DataLoader

    dataloader = accepted_args(DataLoader) | {'num_batch_per_epoch'}
    return Reader(
        name="mmengine's Runner",
        top_level=(_named_params(Runner.__init__)[0] - {'cfg'}) | set(_RUNNER_CFG_KEYS),
        entries=dict(
            train_dataloader=dataloader, val_dataloader=dataloader, test_dataloader=dataloader,
            randomness=_named_params(Runner.set_randomness)[0],
            env_cfg=frozenset({'cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'}),
            auto_scale_lr=frozenset({'enable', 'base_batch_size'}),
            log_processor=accepted_args(LogProcessor),
            optim_wrapper=accepted_args(OptimWrapper) | set(_BUILDER_KEYS['optim_wrapper']),
            visualizer=accepted_args(Visualizer),
            custom_imports=frozenset({'imports', 'allow_failed_imports'}),
        ))


def _name(type_) -> str:
    return getattr(type_, '__name__', str(type_))


# ------------------------------------------------------------------------------------------------- checking

def _tree(options: dict) -> dict:
    """The overrides nested as mmengine nests them before merging (values copied: the merge pops ``_delete_``)."""
    tree: dict = {}
    for full_key, value in options.items():
        node = tree
        *parents, last = full_key.split('.')
        for sub in parents:
            node = node.setdefault(sub, {})
        node[last] = copy.deepcopy(value)
    return tree


def _root(cfg: Config) -> dict:
    """The config's entries as the ConfigDict they are held in (a Config itself is no dict)."""
    return cfg._cfg_dict


def _child(node, key: str):
    if isinstance(node, dict):
        return node.get(key, MISSING)
    if isinstance(node, (list, tuple)) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    return MISSING


def _get(node, segs: list[str]):
    for seg in segs:
        node = _child(node, seg)
    return node


def _check(cfg: Config, trial: Config | None, tree: dict, reader: Reader) -> None:
    """Raise :class:`UnknownKeyError` for the first override nothing reads. Without ``trial`` (the config with
    the overrides merged in) only the structure is checked: indices in range, no key below a non-dict."""
    user_keys = list(_flat_keys(tree))

    def fail(segs: list[str], at: int, reason: str, candidates) -> None:
        prefix = '.'.join(segs)
        key = next((k for k in user_keys if k == prefix or k.startswith(prefix + '.')), prefix)
        parts = key.split('.')
        names = sorted(set(candidates))
        match = difflib.get_close_matches(segs[at], names, n=1, cutoff=0.6)
        hint = (f"did you mean '{'.'.join([*parts[:at], match[0], *parts[at + 1:]])}'?" if match else
                f"valid keys there: {', '.join(names)}" if names else 'nothing can be set there')
        raise UnknownKeyError(f"unknown config key '{key}' in the overrides: {reason}; {hint}")

    def takes(segs: list[str], key: str, parent, value) -> None:
        """Whether ``parent`` (the merged entry at ``segs``) takes a new ``key`` whose merged value is ``value``."""
        full, at = [*segs, key], len(segs)
        if isinstance(parent, dict) and 'type' in parent:
            accepted = _part_args(segs, parent['type'])
            if accepted is not None and key not in accepted:
                fail(full, at, f'{_name(parent["type"])} takes no argument {key!r}',
                     accepted | set(parent) - {'type', key})
        elif not segs:
            if key not in reader.top_level:
                fail(full, at, f'the config has no {key!r} and {reader.name} reads no such entry',
                     set(cfg.keys()) | reader.top_level)
        elif segs == ['default_hooks']:
            if not (value is None or isinstance(value, dict) and 'type' in value):
                fail(full, at, f'this config has no hook {key!r} (a new hook needs its whole config, with a type)',
                     set(parent) - {key} | set(_DEFAULT_HOOK_NAMES))
        elif len(segs) == 1:
            accepted = reader.entries.get(segs[0])
            if accepted is not None and key not in accepted:
                fail(full, at, f'{reader.name} reads no {key!r} from {segs[0]}', accepted | set(parent) - {key})

    def visit(segs: list[str], tree_node, cfg_node, trial_node, fresh: bool) -> None:
        """``tree_node``: the overrides below ``segs``; ``cfg_node``: the config's entry there (MISSING where the
        overrides replace it); ``fresh``: everything below is set anew, so every key must be taken."""
        if isinstance(tree_node, dict):
            fresh = fresh or bool(tree_node.get(DELETE))
            items = [(str(k), v) for k, v in tree_node.items() if k != DELETE]
        else:           # a list value replaces the config's list: its parts are new
            fresh, items = True, [(str(i), v) for i, v in enumerate(tree_node) if isinstance(v, dict)]
        if fresh:
            cfg_node = MISSING
        old_type = cfg_node.get('type', MISSING) if isinstance(cfg_node, dict) else MISSING
        new_type = trial_node.get('type', MISSING) if isinstance(trial_node, dict) else MISSING
        swapped = old_type is not MISSING and new_type is not MISSING and old_type != new_type
        for key, value in items:
            full = [*segs, key]
            if cfg_node is not MISSING and not isinstance(cfg_node, dict):
                if not isinstance(cfg_node, (list, tuple)):
                    raise UnknownKeyError(f"cannot set '{'.'.join(full)}': '{'.'.join(segs)}' is {cfg_node!r} in "
                                          f'the config, not a dict')
                if not (key.isdigit() and int(key) < len(cfg_node)):
                    raise UnknownKeyError(f"cannot set '{'.'.join(full)}': '{'.'.join(segs)}' is a list of "
                                          f'{len(cfg_node)} entries (indices 0-{len(cfg_node) - 1})')
            child_cfg = _child(cfg_node, key)
            child_trial = _child(trial_node, key) if trial is not None else MISSING
            if trial is not None and key == 'type':
                _check_new_type(cfg, full, child_trial)
            elif trial is not None and (fresh or swapped or child_cfg is MISSING) and \
                    not isinstance(trial_node, (list, tuple)):
                takes(segs, key, trial_node, child_trial)
            if isinstance(value, dict) or (isinstance(value, (list, tuple)) and
                                           any(isinstance(v, dict) for v in value)):
                visit(full, value, child_cfg, child_trial, fresh or child_cfg is MISSING)

    visit([], tree, _root(cfg), _root(trial) if trial is not None else MISSING, False)


def _check_new_type(cfg: Config, segs: list[str], new_type) -> None:
    """A new ``type`` must be registered where the config's old one is (an unknown masker lists the maskers)."""
    old_type = _get(_root(cfg), segs)
    found = find_part(old_type) if old_type is not MISSING else None
    if found and found[0] is not None and new_type != old_type:
        check_type(dict(type=new_type), found[0])


def _flat_keys(tree: dict, prefix: str = ''):
    for key, value in tree.items():
        path = f'{prefix}{key}'
        if isinstance(value, dict) and value and DELETE not in value:
            yield from _flat_keys(value, path + '.')
        else:
            yield path


# --------------------------------------------------------------------------------------------- type swaps

def _type_swaps(cfg: Config, tree: dict) -> list[TypeSwap]:
    """Where the overrides change a part's ``type`` without ``_delete_``: the old arguments to drop."""
    swaps = []

    def visit(segs, tree_node, cfg_node):
        if not isinstance(tree_node, dict) or tree_node.get(DELETE):
            return
        new, old = tree_node.get('type', MISSING), cfg_node.get('type', MISSING) if isinstance(cfg_node, dict) \
            else MISSING
        if new is not MISSING and old is not MISSING and new != old:
            accepted = _part_args(segs, new)
            if accepted is not None:
                old_args = {k: v for k, v in cfg_node.items() if k != 'type' and k not in tree_node}
                dropped = {k: v for k, v in old_args.items() if k not in accepted}
                kept = {k: v for k, v in old_args.items() if k in accepted}
                if old_args:
                    swaps.append(TypeSwap('.'.join(segs), old, new, dropped, kept))
        for key, value in tree_node.items():
            child = _child(cfg_node, str(key))
            if child is not MISSING:
                visit([*segs, str(key)], value, child)

    visit([], tree, _root(cfg))
    return swaps


def _merge(cfg: Config, swaps: list[TypeSwap], options: dict) -> None:
    for swap in swaps:
        node = _get(_root(cfg), swap.path.split('.'))
        for key in swap.dropped:
            del node[key]
    cfg.merge_from_dict(copy.deepcopy(options))    # the merge pops ``_delete_`` from the dicts it is given
