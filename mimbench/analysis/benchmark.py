"""Speed, FLOPs and memory of a pretraining step, and the machine's matmul rate to compare them with."""
from __future__ import annotations

import contextlib
import resource
import statistics
import time
import warnings
from dataclasses import asdict, dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mimbench.engine.precision import bfloat16_products, precision_context


@dataclass
class StepBenchmark:
    """Figures for one algorithm at one batch size (per image unless the name says otherwise)."""

    batch_size: int
    device: str
    dtype: str
    train_img_per_s: float          # forward + backward + AdamW step
    forward_img_per_s: float        # pretraining forward (loss) without gradients
    train_gflops_per_img: float     # counted by torch's FlopCounterMode over forward + backward
    forward_gflops_per_img: float
    peak_memory_mb: float           # CUDA: max allocated; CPU: the process's peak resident set size
    matmul_gflops: float | None = None   # the machine's square-matmul rate (up to 2048) in this precision
    profile: dict | None = None     # share of the step's time by kind of operation (see step_profile)

    @property
    def utilization(self) -> float | None:
        """Achieved training FLOP rate as a fraction of the matmul rate."""
        if not self.matmul_gflops:
            return None
        return self.train_gflops_per_img * self.train_img_per_s / self.matmul_gflops

    def as_dict(self) -> dict:
        return {**asdict(self), 'utilization': self.utilization}


# Kinds of operation a step's time is split into, by the name of the aten op (a prefix, so each op's backward
# counts with it); what matches none is 'other' (elementwise arithmetic, reductions, indexing, the optimizer's
# updates...).
PROFILE_KINDS = {
    'matrix products': ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'aten::_scaled_dot_product',
                        'aten::_flash_attention', 'aten::_efficient_attention', 'aten::mkldnn_convolution',
                        'aten::convolution_backward', 'aten::cudnn_convolution'),
    'dtype casts and copies': ('aten::copy_', 'aten::_to_copy'),
    'GELU, softmax, LayerNorm': ('aten::gelu', 'aten::_softmax', 'aten::native_layer_norm'),
}


def step_profile(step, steps: int = 3, device: torch.device | None = None) -> dict:
    """Where ``step``'s time goes, from torch's profiler over ``steps`` calls (after one untimed call): the
    share of the recorded self time of each of :data:`PROFILE_KINDS` and 'other' (everything else, Python
    overhead in recorded regions included), which add up to 1, and 'optimizer step', the share spent inside
    ``optimizer.step`` (its ops are also counted in their kinds). On CUDA the shares are of device time."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device is not None and device.type == 'cuda'
    step()
    _sync(device or torch.device('cpu'))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(device or torch.device('cpu'))
    events = prof.key_averages()
    # one denominator for every share: all time recorded, Python overhead inside recorded regions included
    self_time = {e.key: (e.self_device_time_total if cuda else e.self_cpu_time_total) for e in events}
    total = sum(self_time.values()) or 1
    shares = {kind: sum(t for name, t in self_time.items() if name.startswith(prefixes)) / total
              for kind, prefixes in PROFILE_KINDS.items()}
    shares['other'] = 1.0 - sum(shares.values())
    if not cuda:
        shares['optimizer step'] = sum(e.cpu_time_total for e in events if e.key.startswith('Optimizer.step#')) / total
    return shares


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def matmul_gflops(n: int = 2048, repeats: int = 10, device: str | torch.device = 'cpu',
                  dtype: torch.dtype = torch.float32, slow_s: float = 0.05, per_core: bool = False) -> float:
    """GFLOP/s of an ``n x n @ n x n`` product in ``dtype`` (best of ``repeats``): the machine's practical peak
    in that precision.

    The size grows from 256 towards ``n`` and stops early once one product takes ``slow_s`` or more: where the
    precision is emulated (torch's own bf16 kernel on a CPU without bf16 units ran 50-100x below fp32) a
    2048-size product takes ~15 s, and its rate is the same at 512. A bf16 product runs as training runs it
    (:func:`bfloat16_products`: float32 products of the bf16 operands on a CPU without bf16 units).

    ``per_core`` (CPU only): one thread's GFLOP per second of its own CPU time. Other processes take CPU time
    from the measurement without lowering that rate, so it holds on a busy machine: beside two training cells
    on the 2-core AVX2 EPYC (2026-12-07) the wall-clock rate read 0.4 to 23 GFLOP/s from one call to the next,
    one thread's CPU-time rate 44-59 (the headers of ``tools/ablate.py --dry-run``)."""
    device = torch.device(device)
    if per_core and device.type != 'cpu':
        raise ValueError(f'per_core measures a CPU thread, not {device}')
    bf16 = dtype == torch.bfloat16
    clock = time.process_time if per_core else time.perf_counter
    threads = torch.get_num_threads()
    if per_core:
        torch.set_num_threads(1)
    try:
        size = min(256, n)
        while True:
            a = torch.randn(size, size, device=device, dtype=dtype)
            b = torch.randn(size, size, device=device, dtype=dtype)
            with bfloat16_products(device.type, enabled=bf16):
                took = _time_product(a, b, device, clock=clock)
            if size >= n or took >= slow_s:
                break
            size = min(2 * size, n)
        best = took
        with bfloat16_products(device.type, enabled=bf16):
            for _ in range(repeats - 1):
                best = min(best, _time_product(a, b, device, warm=False, clock=clock))
    finally:
        torch.set_num_threads(threads)
    return 2 * size ** 3 / best / 1e9


def _time_product(a: torch.Tensor, b: torch.Tensor, device: torch.device, warm: bool = True,
                  clock=time.perf_counter) -> float:
    if warm:         # the first product of a size pays for allocation and kernel selection
        a @ b
    _sync(device)
    start = clock()
    a @ b
    _sync(device)
    return clock() - start


def count_flops(fn) -> int:
    """Total FLOPs of everything ``fn()`` runs (a multiply-add counts 2), attention included.

    FlopCounterMode has no formula for CPU's fused attention kernel (torch 2.14:
    ``_scaled_dot_product_flash_attention_for_cpu``) and would count attention as zero on CPU, so counting
    runs attention through the math backend, whose two batched products it counts: the same figure on every
    device. Timings elsewhere use the normal kernels.
    """
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return counter.get_total_flops()


def _timed(fn, warmup: int, iters: int, device: torch.device) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark_algorithm(model: torch.nn.Module, image_size: int, batch_size: int, warmup: int = 3,
                        iters: int = 10, amp: bool = False, device: str | torch.device | None = None,
                        with_matmul: bool = True, attention: str = 'auto', compile: bool = False,
                        profile_steps: int = 0) -> StepBenchmark:
    """Time ``model.loss`` (a :class:`~mimbench.algorithms.BaseAlgorithm`) on random normalized images.

    The data pipeline is left out on purpose: these are the model's figures. Masks are drawn fresh each
    step, as in training. ``amp``: bfloat16 autocast with the attention kernel ``attention`` (the training
    step's :func:`~mimbench.engine.precision.precision_context`, so the figures are the trainer's).
    ``compile``: time ``torch.compile(model.loss)`` (the warm-up steps absorb the compilation); FLOPs are
    counted on the eager model either way. ``profile_steps``: also split that many train steps' time by kind of
    operation (:func:`step_profile`).
    """
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    model = model.to(device).train()
    imgs = torch.randn(batch_size, 3, image_size, image_size, device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    dtype = torch.bfloat16 if amp else torch.float32

    compiled = torch.compile(model.loss) if compile else model.loss

    def loss(fn=compiled):
        with precision_context(device.type, dtype, attention):
            return sum(v for k, v in fn(imgs).items() if 'loss' in k)

    # CAE's momentum teacher is updated after every optimizer step in training (MomentumTeacherHook)
    momentum_update = getattr(model, 'momentum_update', None)

    def backward(value: torch.Tensor) -> None:
        with bfloat16_products(device.type, enabled=amp):    # the backward's too
            value.backward()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        backward(loss())
        optimizer.step()
        if momentum_update is not None:
            momentum_update()

    def forward():
        # forward-only timing never steps, so CAE would warn that its teacher is stale: expected here
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*teacher has not been updated')
            loss()

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    train_s = _timed(train_step, warmup, iters, device)
    forward_s = _timed(forward, warmup, iters, device)
    train_flops = count_flops(lambda: backward(loss(model.loss)))
    # counted with autograd on: the same FLOPs, and FlopCounterMode's module tracker fails on some no_grad
    # views of parameters (CAE's expanded mask token)
    forward_flops = count_flops(lambda: loss(model.loss))
    optimizer.zero_grad(set_to_none=True)
    if device.type == 'cuda':
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return StepBenchmark(
        batch_size=batch_size, device=device.type,
        dtype=(f'bfloat16 autocast, attention {attention}' if amp else 'float32') + (', compiled' if compile else ''),
        train_img_per_s=batch_size / train_s, forward_img_per_s=batch_size / forward_s,
        train_gflops_per_img=train_flops / batch_size / 1e9, forward_gflops_per_img=forward_flops / batch_size / 1e9,
        peak_memory_mb=peak_mb,
        matmul_gflops=matmul_gflops(device=device, dtype=dtype) if with_matmul else None,
        profile=step_profile(train_step, profile_steps, device) if profile_steps else None)


def bf16_agreement(model: torch.nn.Module, image_size: int, batch_size: int = 64, steps: int = 20,
                   lr: float = 1.5e-3, log=None) -> dict:
    """How closely bf16 training on this CPU follows bf16 units, measured: copies of ``model`` train ``steps``
    AdamW steps from the same weights on the same random images and masks, as

    - ``'float32'``;
    - ``'bf16 torch'``: bf16 autocast with torch's own bf16 kernels (a bf16 unit's where the CPU has them,
      torch's fallback elsewhere), at the present thread count;
    - ``'bf16 torch, 1 thread'`` (when more threads are set): the same kernels summing in another order, the
      floor below which no two bf16 kernels can be told apart;
    - ``'bf16 float32 products'``: bf16 autocast under :class:`~mimbench.engine.precision.Float32Products`,
      what training runs on a CPU without bf16 units.

    Returns ``{'losses': {run: [loss per step]}, 'vs bf16 torch': {run: {'max_loss_diff', 'weight_diff'}}}``,
    the weight difference as ``|w - w_ref| / |w_ref|`` after the last step. CPU only; torch's fallback bf16
    kernel makes this take minutes where the CPU has no bf16 units."""
    import copy
    from mimbench.engine.precision import Float32Products
    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(batch_size, 3, image_size, image_size, generator=gen) for _ in range(steps)]
    runs = {'float32': (torch.float32, False, threads), 'bf16 torch': (torch.bfloat16, False, threads),
            'bf16 float32 products': (torch.bfloat16, True, threads)}
    if threads > 1:
        runs['bf16 torch, 1 thread'] = (torch.bfloat16, False, 1)
    losses, weights = {}, {}
    try:
        for name, (dtype, products, n_threads) in runs.items():
            torch.set_num_threads(n_threads)
            net = copy.deepcopy(model).train()
            optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
            start, losses[name] = time.perf_counter(), []
            for step, imgs in enumerate(batches):
                torch.manual_seed(step)          # the same masks in every run
                optimizer.zero_grad(set_to_none=True)
                # Float32Products by hand: bfloat16_products enters it only where bf16 units are missing
                with Float32Products() if products else contextlib.nullcontext():
                    with precision_context('cpu', dtype, products=False):     # the training step's, less that
                        loss = sum(v for k, v in net.loss(imgs).items() if 'loss' in k)
                    loss.backward()
                optimizer.step()
                if hasattr(net, 'momentum_update'):      # CAE's teacher follows every step, as in training
                    net.momentum_update()
                losses[name].append(loss.item())
            weights[name] = torch.cat([p.detach().flatten() for p in net.parameters()])
            if log is not None:
                log(f'{name}: {steps} steps in {time.perf_counter() - start:.0f} s, final loss {losses[name][-1]:.5f}')
    finally:
        torch.set_num_threads(threads)
    ref_losses, ref_weights = losses['bf16 torch'], weights['bf16 torch']
    return {'losses': losses, 'vs bf16 torch': {
        name: {'max_loss_diff': max(abs(a - b) for a, b in zip(losses[name], ref_losses)),
               'weight_diff': ((weights[name] - ref_weights).norm() / ref_weights.norm()).item()}
        for name in runs if name != 'bf16 torch'}}


_ENCODER_ENTRY_POINTS = ('forward', 'forward_visible', 'forward_masked')


def algorithm_flops(model: torch.nn.Module, image_size: int, batch_size: int = 2) -> dict:
    """FLOPs per image of one pretraining step of ``model`` (a :class:`~mimbench.algorithms.BaseAlgorithm`
    with an ``encoder``), counted by ``FlopCounterMode`` on random images: ``train`` (forward + backward),
    ``forward`` and ``encoder`` (the encoder's forward inside that step: the visible patches for MAE/CAE, all
    patches with [M] for BEiT-style or MAE with the mask token in the encoder). Teachers and tokenizers count
    in ``forward``/``train`` but not in ``encoder``.
    """
    imgs = torch.randn(batch_size, 3, image_size, image_size)
    encoder = model.encoder
    counted = dict(flops=0, depth=0)

    def counting(fn):
        def wrapped(*args, **kwargs):
            if counted['depth']:            # an entry point calling another: count the outer call only
                return fn(*args, **kwargs)
            counted['depth'] += 1
            try:
                with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                    out = fn(*args, **kwargs)
            finally:
                counted['depth'] -= 1
            counted['flops'] += counter.get_total_flops()
            return out
        return wrapped

    def total_loss():
        return sum(v for k, v in model.loss(imgs).items() if 'loss' in k)

    model.train()
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*teacher has not been updated')
        forward = count_flops(total_loss)
        train = count_flops(lambda: total_loss().backward())
        originals = {name: getattr(encoder, name) for name in _ENCODER_ENTRY_POINTS}
        try:
            for name, fn in originals.items():
                setattr(encoder, name, counting(fn))
            total_loss()
        finally:
            for name in originals:
                delattr(encoder, name)      # back to the class's methods
    model.zero_grad(set_to_none=True)
    return dict(train=train / batch_size / 1e9, forward=forward / batch_size / 1e9,
                encoder=counted['flops'] / batch_size / 1e9)
