"""The precision a forward pass runs in and the attention kernel that goes with it.

The training step (:class:`~mimbench.engine.optim.AutocastOptimWrapper`) and ``tools/benchmark.py`` both enter
:func:`precision_context`, so a benchmark measures what training runs.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

# Attention a config may name besides 'auto' and 'default' (torch's own choice): torch's fused kernels, and
# 'explicit', softmax(q k^T / sqrt(d)) v as three plain operations (see ExplicitAttention).
ATTENTION_KERNELS = {'explicit': 'explicit', 'math': SDPBackend.MATH, 'flash': SDPBackend.FLASH_ATTENTION,
                     'efficient': SDPBackend.EFFICIENT_ATTENTION, 'cudnn': SDPBackend.CUDNN_ATTENTION}


def attention_kernel(name: str, device_type: str, dtype: torch.dtype) -> SDPBackend | str | None:
    """The attention to run under ``dtype`` on ``device_type``: an ``SDPBackend``, ``'explicit'``, or None for
    torch's own choice.

    'auto' picks 'explicit' on a CPU in bfloat16 and torch's choice elsewhere. On a 2-core AMD EPYC with
    AVX512-BF16 (2026-12-06, docs/performance.md, ``tools/benchmark.py --attention auto math default``) the micro
    MAE's bf16 train step ran at 518 img/s with explicit products, 455 with torch's math kernel (which checks for
    fully masked rows and computes in float32) and 325 with torch's CPU flash kernel;
    float32 keeps torch's choice (the flash kernel there), and so does CUDA. ``tools/benchmark.py --attention``
    measures the choice on a machine.
    """
    if name == 'auto':
        return 'explicit' if device_type == 'cpu' and dtype == torch.bfloat16 else None
    if name == 'default':
        return None
    if name not in ATTENTION_KERNELS:
        raise ValueError(f"attention must be 'auto', 'default' or one of {', '.join(ATTENTION_KERNELS)}, "
                         f'got {name!r}')
    return ATTENTION_KERNELS[name]


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
                       ) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` for ``q [B, H, Lq, d]``, ``k, v [B, H, Lk, d]`` -> ``[B, H, Lq, d]``; scale
    defaults to ``1 / sqrt(d)``, as in ``F.scaled_dot_product_attention``. Each product runs in the autocast
    precision; the softmax in what autocast gives it."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v


class ExplicitAttention(TorchFunctionMode):
    """Inside this mode every ``F.scaled_dot_product_attention`` call without a mask, dropout, causal or
    grouped-query option runs as :func:`explicit_attention`; other calls keep torch's kernels. A mode reaches
    every attention (timm's blocks, our cross-attention) without changing a module."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v, *rest = args
            options = dict(zip(('attn_mask', 'dropout_p', 'is_causal', 'scale', 'enable_gqa'), rest), **kwargs)
            if (options.get('attn_mask') is None and not options.get('dropout_p') and not options.get('is_causal')
                    and not options.get('enable_gqa')):
                return explicit_attention(q, k, v, options.get('scale'))
        return func(*args, **kwargs)


@contextlib.contextmanager
def precision_context(device_type: str, dtype: torch.dtype = torch.float32, attention: str = 'auto'
                      ) -> Iterator[None]:
    """Run a forward pass in ``dtype`` (bfloat16: ``torch.autocast``; float32: as it is) with the attention
    :func:`attention_kernel` picks. The backward follows the kernels its forward chose."""
    kernel = attention_kernel(attention, device_type, dtype)
    with contextlib.ExitStack() as stack:
        if dtype != torch.float32:
            stack.enter_context(torch.autocast(device_type=device_type, dtype=dtype))
        if kernel == 'explicit':
            stack.enter_context(ExplicitAttention())
        elif kernel is not None:
            stack.enter_context(sdpa_kernel(kernel))
        yield
