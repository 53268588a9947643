"""The precision a forward pass runs in, the attention kernel that goes with it, and how bfloat16 products are
computed where the CPU has no bf16 units.

The training step (:class:`~mimbench.engine.optim.AutocastOptimWrapper`) and ``tools/benchmark.py`` both enter
:func:`precision_context`, so a benchmark measures what training runs.
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from mimbench.machine import has_native_bfloat16

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


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` for ``q [B, H, Lq, d]``, ``k, v [B, H, Lk, d]`` -> ``[B, H, Lq, d]``;
    scale defaults to ``1 / sqrt(d)``, as in ``F.scaled_dot_product_attention``, whose float ``attn_mask`` is
    ``bias`` (broadcast to ``[B, H, Lq, Lk]``, e.g. a relative position bias). Each product runs in the autocast
    precision; the softmax in what autocast gives it (float32 where the bias is)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1) @ v


class ExplicitAttention(TorchFunctionMode):
    """Inside this mode every ``F.scaled_dot_product_attention`` call without a boolean mask, dropout, causal or
    grouped-query option runs as :func:`explicit_attention` (a float mask is an additive bias there); other calls
    keep torch's kernels. A mode reaches every attention (timm's blocks, our cross-attention) without changing a
    module."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v, *rest = args
            options = dict(zip(('attn_mask', 'dropout_p', 'is_causal', 'scale', 'enable_gqa'), rest), **kwargs)
            mask = options.get('attn_mask')
            if ((mask is None or mask.is_floating_point()) and not options.get('dropout_p')
                    and not options.get('is_causal') and not options.get('enable_gqa')):
                return explicit_attention(q, k, v, options.get('scale'), mask)
        return func(*args, **kwargs)


aten = torch.ops.aten
# The products of a bf16 pass as the mode sees them: with autograd on, linear layers as addmm and mm, attention and
# einsum as bmm and baddbmm, the patch embedding as convolution (and convolution_backward); under
# torch.inference_mode the composite linear, matmul, einsum and conv2d arrive whole; vectors as mv, addmv, dot.
_PRODUCTS = frozenset({aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default,
                       aten.mv.default, aten.addmv.default, aten.dot.default,
                       aten.convolution.default, aten.convolution_backward.default,
                       aten.linear.default, aten.matmul.default, aten.einsum.default, aten.conv2d.default})


def _to(dtype: torch.dtype, tree):
    return tree_map(lambda x: x.to(dtype) if isinstance(x, torch.Tensor) else x, tree)


@functools.lru_cache(maxsize=None)
def _composite(func) -> bool:
    # cached per operator: the mode asks it of every operation it sees
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), 'CompositeImplicitAutograd')


class Float32Products(TorchDispatchMode):
    """Inside this mode a matrix product or convolution whose tensor operands are all bfloat16 runs as the
    float32 product of those operands, its result rounded to bfloat16; every other operation runs as it is.

    That is what a bf16 unit computes: bf16 operands, whose products are exact in float32 (8 + 8 significant
    bits), summed in float32, rounded once to bf16. Only the order of the float32 sum differs, as it differs
    between AVX512-BF16, AMX and GPU kernels: on a 128 x 192 @ 192 x 160 product over 99% of the results are
    bit-identical to torch's own bf16 kernel and the rest differ in the last bit (``tests/test_precision.py``).
    On a CPU without bf16 units torch runs bf16 products in a fallback at ~1 GFLOP/s, 50-100x below float32;
    this runs them at the float32 rate, plus the casts (docs/performance.md). Fused attention kernels
    (``sdpa_kernel``'s flash and friends) round inside themselves and are left to torch; the CPU's bf16
    attention is plain products (:func:`attention_kernel`). The mode sees the operations below autograd, so a
    backward pass run inside it is covered too. Under ``torch.inference_mode`` composite operations arrive
    whole: one with a bf16 operand that is not a product above is decomposed inside the mode, as autograd would
    have, so the products it is made of (``conv1d``'s convolution, ``tensordot``'s mm) are seen. Code under
    this mode runs eagerly: ``torch.compile`` does not trace under a dispatch mode."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        product = func in _PRODUCTS
        if product or _composite(func):          # anything else (most of a training step) passes untouched
            bf16 = [x.dtype == torch.bfloat16 and x.device.type == 'cpu'
                    for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]
            if product and bf16 and all(bf16):
                return _to(torch.bfloat16, func(*_to(torch.float32, args), **_to(torch.float32, kwargs)))
            if not product and any(bf16):
                with self:
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
        return func(*args, **kwargs)


def bfloat16_products(device_type: str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """:class:`Float32Products` on a CPU without bf16 units (AVX512-BF16 or AMX), nothing elsewhere or when not
    ``enabled`` (as ``torch.autocast``'s): enter it around any forward or backward pass that computes in
    bfloat16."""
    if enabled and device_type == 'cpu' and not has_native_bfloat16('cpu'):
        return Float32Products()
    return contextlib.nullcontext()


@contextlib.contextmanager
def precision_context(device_type: str, dtype: torch.dtype = torch.float32, attention: str = 'auto',
                      products: bool = True) -> Iterator[None]:
    """Run a forward pass in ``dtype`` (bfloat16: ``torch.autocast``, its products by :func:`bfloat16_products`
    unless ``products`` is False, which keeps torch's own bf16 kernels to compare with; float32: as it is) with
    the attention :func:`attention_kernel` picks. The backward follows the kernels its forward chose; run it
    inside :func:`bfloat16_products` too."""
    kernel = attention_kernel(attention, device_type, dtype)
    with contextlib.ExitStack() as stack:
        if dtype != torch.float32:
            stack.enter_context(torch.autocast(device_type=device_type, dtype=dtype))
            stack.enter_context(bfloat16_products(device_type, enabled=products and dtype == torch.bfloat16))
        if kernel == 'explicit':
            stack.enter_context(ExplicitAttention())
        elif kernel is not None:
            stack.enter_context(sdpa_kernel(kernel))
        yield


def forward_modes_again() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    """A ``context_fn`` for ``torch.utils.checkpoint.checkpoint``: the recomputation in the backward runs under
    the torch-function modes its forward ran under (:class:`ExplicitAttention`). The backward does not see them,
    so a checkpointed block would recompute its attention with torch's kernel, whose saved tensors torch then
    refuses as different from the forward's."""
    modes = _get_current_function_mode_stack()

    @contextlib.contextmanager
    def again():
        active = _get_current_function_mode_stack()
        with contextlib.ExitStack() as stack:
            for mode in modes:
                if not any(mode is other for other in active):
                    stack.enter_context(mode)
            yield

    return contextlib.nullcontext(), again()
