"""Optimizer wrappers."""
from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mimbench.engine.precision import attention_kernel, precision_context
from mimbench.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS

@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision on CPU and CUDA: the forward pass runs under ``torch.autocast`` in ``dtype``, with the
    attention kernel ``attention`` names ('auto': the fastest for the device and precision, see
    :func:`~mimbench.engine.precision.attention_kernel`).

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
        attention_kernel(attention, 'cpu', torch.bfloat16)     # a bad name fails when the wrapper is built
        self.dtype = torch.bfloat16
        self.attention = attention
        self._checked_units = False

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        device_type = 'cuda' if next(model.parameters()).is_cuda else 'cpu'
        if not self._checked_units:
            self._checked_units = True
            from mimbench.machine import EMULATED_BF16_COST, describe, has_native_bfloat16
            if not has_native_bfloat16(device_type):
                # obeyed (the config asked for bf16), but a run many times slower than float32 should not be silent
                print_log(f'bfloat16 autocast on a device without bf16 units ({describe(device_type)}): torch '
                          f'emulates it: {EMULATED_BF16_COST}. (tools/train.py --precision auto would train in '
                          f'float32 here)', logger='current', level=logging.WARNING)
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
