"""The registries that make every mimbench part buildable from a config.

A config names a part by ``type``; the matching registry below builds it. The registries are children of
mmengine's root registries where mmengine's Runner must find our classes (models, loops, hooks, samplers, optim
wrappers, model wrappers); the rest (encoders, maskers, targets, heads) are ours alone, which keeps the number
of registries small.

An unknown ``type`` raises an :class:`UnknownTypeError` (a ``KeyError``) that lists every name the registry
knows, instead of mmengine's generic "not in the registry" message; a value a part refuses (its ``ValueError``)
raises a :class:`BadArgumentError` that names the part.
"""
from __future__ import annotations

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry, build_from_cfg

from mimbench.errors import MimbenchError

SCOPE = 'mimbench'


def _all_names(registry: Registry) -> list[str]:
    """Names buildable from ``registry``: its own and, for children of mmengine's registries, the parent's."""
    names = set(registry.module_dict)
    if registry.parent is not None:
        registry.parent.import_from_location()  # mmengine fills its registries lazily
        names |= set(registry.parent.module_dict)
    return sorted(names)


class UnknownTypeError(MimbenchError, KeyError):
    """A config names a ``type`` that no registered class has."""


def check_type(cfg, registry: Registry) -> None:
    """Raise :class:`UnknownTypeError` listing the registered names when ``cfg['type']`` is unknown."""
    if isinstance(cfg, dict) and isinstance(cfg.get('type'), str) and registry.get(cfg['type']) is None:
        raise UnknownTypeError(f"unknown {registry.name} type '{cfg['type']}'; registered {registry.name} types: "
                       f"{', '.join(_all_names(registry))}")


class BadArgumentError(MimbenchError, ValueError):
    """A part refused a value of its config (``ratio=1.5`` for a masker); the message names the part."""


def _checked(build_func):
    """Wrap a registry build function so that an unknown type names the registered ones, and a value the part
    refuses names the part."""

    def build(cfg, registry: Registry, default_args=None):
        check_type(cfg, registry)
        try:
            return build_func(cfg, registry, default_args)
        except ValueError as err:
            if isinstance(err, MimbenchError):     # already says what is wrong (a data error, an inner part)
                raise
            # a part checks its arguments with ValueError; as a user error the tools print it in one line
            type_ = (cfg.get('type') if isinstance(cfg, dict) else None) or (default_args or {}).get('type')
            raise BadArgumentError(f'{registry.name} {getattr(type_, "__name__", type_)}: {err}') from err

    return build


def _registry(name: str, parent: Registry | None = None) -> Registry:
    # Children keep the parent's build function (mmengine's models and optimizers have special ones).
    build_func = parent.build_func if parent is not None else build_from_cfg
    return Registry(name, parent=parent, scope=SCOPE, build_func=_checked(build_func))


# Algorithms (MAE, CAE, ...) and the data preprocessor: what mmengine's Runner builds as ``model``.
MODELS = _registry('model', MMENGINE_MODELS)
ENCODERS = _registry('encoder')
MASKERS = _registry('masker')
TARGETS = _registry('target')
# Everything downstream of the encoder in pretraining: decoders, regressors, prediction heads.
HEADS = _registry('head')
DATASETS = _registry('dataset', MMENGINE_DATASETS)
TRANSFORMS = _registry('transform', MMENGINE_TRANSFORMS)
HOOKS = _registry('hook', MMENGINE_HOOKS)
# Runner plumbing that mmengine looks up by type.
LOOPS = _registry('loop', MMENGINE_LOOPS)
DATA_SAMPLERS = _registry('data sampler', MMENGINE_DATA_SAMPLERS)
OPTIM_WRAPPERS = _registry('optim wrapper', MMENGINE_OPTIM_WRAPPERS)
MODEL_WRAPPERS = _registry('model wrapper', MMENGINE_MODEL_WRAPPERS)
FUNCTIONS = _registry('function', MMENGINE_FUNCTIONS)
# Children of the remaining registries the Runner consults, so that building under the 'mimbench' scope finds
# mmengine's optimizers, schedulers and loggers without a fallback warning.
OPTIMIZERS = _registry('optimizer', MMENGINE_OPTIMIZERS)
OPTIM_WRAPPER_CONSTRUCTORS = _registry('optimizer wrapper constructor', MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _registry('parameter scheduler', MMENGINE_PARAM_SCHEDULERS)
LOG_PROCESSORS = _registry('log_processor', MMENGINE_LOG_PROCESSORS)
VISUALIZERS = _registry('visualizer', MMENGINE_VISUALIZERS)
VISBACKENDS = _registry('vis_backend', MMENGINE_VISBACKENDS)
