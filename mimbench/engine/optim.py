"""Optimizer wrappers."""
from __future__ import annotations

import contextlib
import logging
from contextlib import contextmanager

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mimbench.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS

# Attention kernels a config may name (torch.nn.attention.SDPBackend), and 'auto' (see attention_backend).
ATTENTION_BACKENDS = {'math': SDPBackend.MATH, 'flash': SDPBackend.FLASH_ATTENTION,
                      'efficient': SDPBackend.EFFICIENT_ATTENTION, 'cudnn': SDPBackend.CUDNN_ATTENTION}


def attention_backend(name: str, device_type: str, dtype: torch.dtype) -> SDPBackend | None:
    """The attention kernel to run under autocast to ``dtype`` on ``device_type``; None leaves torch's choice.

    'auto': on a CPU in bfloat16, the math kernel (two batched matmuls and a softmax). torch's CPU
    flash-attention kernel computes its backward far slower in bf16 than the math path for ViT sequence lengths
    (2026-12-06, 2-core AMD EPYC with AVX512-BF16, forward + backward, batched heads of 64 channels: math 3.7x
    faster at 17 tokens, 2.3-2.6x at 33-65, 1.15x at 197), while in float32 flash is the faster one (0.33-0.78x
    math's time), so float32 keeps torch's choice. On CUDA torch's own order (flash, memory-efficient, math) is
    already the fastest. ``tools/benchmark.py --attention`` measures the choice on a machine.
    """
    if name == 'auto':
        return SDPBackend.MATH if device_type == 'cpu' and dtype == torch.bfloat16 else None
    if name == 'default':
        return None
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"attention must be 'auto', 'default' or one of {', '.join(ATTENTION_BACKENDS)}, "
                         f'got {name!r}')
    return ATTENTION_BACKENDS[name]


@contextmanager
def precision_context(device_type: str, dtype: torch.dtype = torch.float32, attention: str = 'auto'):
    """Run a forward pass in ``dtype`` (bfloat16: ``torch.autocast``; float32: as it is) with the attention
    kernel :func:`attention_backend` picks. The training step and ``tools/benchmark.py`` both enter this, so a
    benchmark measures what training runs. The backward follows the kernels its forward chose."""
    backend = attention_backend(attention, device_type, dtype)
    with contextlib.ExitStack() as stack:
        if dtype != torch.float32:
            stack.enter_context(torch.autocast(device_type=device_type, dtype=dtype))
        if backend is not None:
            stack.enter_context(sdpa_kernel(backend))
        yield


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision on CPU and CUDA: the forward pass runs under ``torch.autocast`` in ``dtype``, with the
    attention kernel ``attention`` names ('auto': the fastest for the device and precision, see
    :func:`attention_backend`).

    mmengine's ``AmpOptimWrapper`` refuses to run without a GPU, which would leave the AMP path untested on
    CPU machines. bfloat16 keeps float32's exponent range, so no loss scaling is needed and the update is a
    plain optimizer step; float16 would need a grad scaler, so it is rejected here (use mmengine's
    ``AmpOptimWrapper`` for fp16 on CUDA).
    """

    def __init__(self, *args, dtype: str = 'bfloat16', attention: str = 'auto', **kwargs):
        super().__init__(*args, **kwargs)
        if dtype != 'bfloat16':
            raise ValueError(f"AutocastOptimWrapper dtype must be 'bfloat16', got '{dtype}' "
                             "(for float16 on CUDA use type='AmpOptimWrapper')")
        attention_backend(attention, 'cpu', torch.bfloat16)     # a bad name fails when the wrapper is built
        self.dtype = torch.bfloat16
        self.attention = attention

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        device_type = 'cuda' if next(model.parameters()).is_cuda else 'cpu'
        with super().optim_context(model), precision_context(device_type, self.dtype, self.attention):
            yield


class _DropParamwiseLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return 'paramwise_options' not in record.getMessage()


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SummaryOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor (``paramwise_cfg`` and all) with a one-line summary of the parameter
    groups in place of its one log line per parameter and option (hundreds for a ViT)."""

    def __call__(self, model: torch.nn.Module) -> OptimWrapper:
        logger = MMLogger.get_current_instance()
        quiet = _DropParamwiseLines()
        logger.addFilter(quiet)
        try:
            wrapper = super().__call__(model)
        finally:
            logger.removeFilter(quiet)
        groups = wrapper.optimizer.param_groups
        decayed = sum(p.numel() for g in groups if g.get('weight_decay', 0) > 0 for p in g['params'])
        total = sum(p.numel() for g in groups for p in g['params'])
        logger.info(f'{type(wrapper.optimizer).__name__}: {len(groups)} parameter groups, {total:,} parameters, '
                    f'{decayed:,} with weight decay, {total - decayed:,} without')
        return wrapper
