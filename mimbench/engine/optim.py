"""Optimizer wrappers."""
from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mimbench.engine.precision import attention_kernel, bfloat16_products, precision_context
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
        self._device_type = None      # set by optim_context from the model's parameters

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        self._device_type = 'cuda' if next(model.parameters()).is_cuda else 'cpu'
        if not self._checked_units:
            self._checked_units = True
            from mimbench.machine import describe, has_native_bfloat16
            if self._device_type == 'cpu' and not has_native_bfloat16('cpu'):
                # the same numbers as bf16 units give, but a reader of the log should know how they were made
                print_log(f'bfloat16 autocast on a CPU without bf16 units ({describe("cpu")}): its products run as '
                          f'float32 products of the bf16 operands, rounded to bf16 (Float32Products)',
                          logger='current', level=logging.INFO)
            elif not has_native_bfloat16(self._device_type):
                # obeyed (the config asked for bf16), but a GPU older than Ampere emulates it, slowly
                print_log(f'bfloat16 autocast on a GPU without bf16 units ({describe(self._device_type)}): '
                          f'torch emulates it, slower than float32', logger='current', level=logging.WARNING)
        with super().optim_context(model), precision_context(self._device_type, self.dtype, self.attention):
            yield

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        # the backward's products are bf16 too; the forward's precision_context has been left by now
        with bfloat16_products(self._device_type or 'cpu'):
            super().backward(loss, **kwargs)


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
