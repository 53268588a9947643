"""Speed, FLOPs and memory of a pretraining step, and the machine's matmul rate to compare them with."""
from __future__ import annotations

import resource
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


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
    matmul_gflops: float | None = None   # the machine's fp32 2048^3 matmul rate, for the utilization ratio

    @property
    def utilization(self) -> float | None:
        """Achieved training FLOP rate as a fraction of the matmul rate."""
        if not self.matmul_gflops:
            return None
        return self.train_gflops_per_img * self.train_img_per_s / self.matmul_gflops

    def as_dict(self) -> dict:
        return {**asdict(self), 'utilization': self.utilization}


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def matmul_gflops(n: int = 2048, repeats: int = 10, device: str | torch.device = 'cpu') -> float:
    """fp32 GFLOP/s of an ``n x n @ n x n`` product (best of ``repeats``): the machine's practical peak."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float('inf')
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def count_flops(fn) -> int:
    """Total FLOPs of everything ``fn()`` runs (a multiply-add counts 2)."""
    counter = FlopCounterMode(display=False)
    with counter:
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
                        with_matmul: bool = True) -> StepBenchmark:
    """Time ``model.loss`` (a :class:`~mimbench.algorithms.BaseAlgorithm`) on random normalized images.

    The data pipeline is left out on purpose: these are the model's figures. Masks are drawn fresh each
    step, as in training.
    """
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    model = model.to(device).train()
    imgs = torch.randn(batch_size, 3, image_size, image_size, device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def loss():
        with autocast:
            return sum(v for k, v in model.loss(imgs).items() if 'loss' in k)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    def forward():
        with torch.no_grad():
            loss()

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    train_s = _timed(train_step, warmup, iters, device)
    forward_s = _timed(forward, warmup, iters, device)
    train_flops = count_flops(lambda: loss().backward())
    forward_flops = count_flops(forward)
    optimizer.zero_grad(set_to_none=True)
    if device.type == 'cuda':
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return StepBenchmark(
        batch_size=batch_size, device=device.type, dtype='bfloat16 autocast' if amp else 'float32',
        train_img_per_s=batch_size / train_s, forward_img_per_s=batch_size / forward_s,
        train_gflops_per_img=train_flops / batch_size / 1e9, forward_gflops_per_img=forward_flops / batch_size / 1e9,
        peak_memory_mb=peak_mb, matmul_gflops=matmul_gflops(device=device) if with_matmul else None)
