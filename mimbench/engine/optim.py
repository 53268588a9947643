"""Optimizer wrappers."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from mimbench.registry import OPTIM_WRAPPERS

@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision on CPU and CUDA: the forward pass runs under ``torch.autocast`` in ``dtype``.

    mmengine's ``AmpOptimWrapper`` refuses to run without a GPU, which would leave the AMP path untested on
    CPU machines. bfloat16 keeps float32's exponent range, so no loss scaling is needed and the update is a
    plain optimizer step; float16 would need a grad scaler, so it is rejected here (use mmengine's
    ``AmpOptimWrapper`` for fp16 on CUDA).
    """

    def __init__(self, *args, dtype: str = 'bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        if dtype != 'bfloat16':
            raise ValueError(f"AutocastOptimWrapper dtype must be 'bfloat16', got '{dtype}' "
                             "(for float16 on CUDA use type='AmpOptimWrapper')")
        self.dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        device_type = 'cuda' if next(model.parameters()).is_cuda else 'cpu'
        with super().optim_context(model), torch.autocast(device_type=device_type, dtype=self.dtype):
            yield
