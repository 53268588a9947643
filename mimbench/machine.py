"""Facts about the machine code runs on, for records and for choices that depend on the CPU."""
from __future__ import annotations

import functools
import os
import platform

import torch

from mimbench.errors import MimbenchError


def cpuinfo_field(name: str) -> str | None:
    """The value of ``name`` (e.g. ``'model name'``, ``'flags'``) for the first CPU in ``/proc/cpuinfo``, or
    None where there is no such file or field (not Linux)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere, which may be empty)."""
    return cpuinfo_field('model name') or platform.processor()


def host_info() -> dict:
    """This machine as records store it: ``{'machine': 'x86_64', 'cpus': 2, 'model': 'AMD EPYC ...',
    'bf16_units': True}``. Two VMs with the same core count can differ threefold in a bf16-heavy step (with and
    without AVX512-BF16), so the model name is part of it, and whether the CPU has bf16 units too: the VMs
    name their CPU 'AMD EPYC' with and without them (2026-12), and without them bf16 products run as float32
    products (:class:`~mimbench.engine.precision.Float32Products`). The ablation's store rate compares these
    dicts whole: records written before ``bf16_units`` (2026-12-07) cannot be told apart by machine and no
    longer count towards it."""
    return dict(machine=platform.machine(), cpus=os.cpu_count(), model=cpu_model(),
                bf16_units=cpu_has_bfloat16_units())


def clock_host(entry: dict) -> dict:
    """The machine of one stretch of a training run, as an entry of its clock's ``hosts`` names it
    (:class:`~mimbench.engine.hooks.TrainClockHook`), to compare with :func:`host_info`."""
    return {k: v for k, v in entry.items() if k != 'from_iter'}


def describe(device: torch.device | str = 'cpu') -> str:
    """One line for tables and benchmark records: the GPU's name, or ``'<CPU model>, <n> cores'``."""
    device = torch.device(device)
    if device.type == 'cuda':
        return device_name(device)
    return f'{cpu_model() or platform.machine()}, {os.cpu_count()} cores'


# Precisions a config or command line may name; 'auto' is resolved per device by resolve_dtype.
DTYPES = ('float32', 'bfloat16', 'auto')


@functools.lru_cache(maxsize=None)
def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), read from ``/proc/cpuinfo``
    (False where there is none). Without those units torch's own bf16 products run 50-100x below float32;
    ours then run as float32 products (:func:`~mimbench.engine.precision.bfloat16_products`), and bf16 is
    still a little slower than float32 instead of faster (docs/performance.md)."""
    return bool({'avx512_bf16', 'amx_bf16'} & set((cpuinfo_field('flags') or '').split()))


def has_native_bfloat16(device: torch.device | str = 'cpu') -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU of compute capability 8.0 or newer (Ampere;
    ``torch.cuda.is_bf16_supported()`` alone also counts emulation), a CPU with bf16 units."""
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == 'cpu' and cpu_has_bfloat16_units()


def resolve_dtype(name: str, device: torch.device | str = 'cpu') -> torch.dtype:
    """``'float32'``, ``'bfloat16'``, or ``'auto'``: bfloat16 where ``device`` computes it natively, float32
    elsewhere, where bf16 is slower, not faster. Explicit names are obeyed."""
    if name not in DTYPES:
        raise ValueError(f'dtype must be one of {", ".join(map(repr, DTYPES))}, got {name!r}')
    if name == 'auto':
        return torch.bfloat16 if has_native_bfloat16(device) else torch.float32
    return getattr(torch, name)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``'bfloat16'``: the name configs, cache keys and records use."""
    return str(dtype).removeprefix('torch.')


class DeviceError(MimbenchError, ValueError):
    """A device name that is malformed or not present here."""


def resolve_device(name: str | torch.device | None = 'auto') -> torch.device:
    """``'auto'`` (or None): the first CUDA GPU when there is one, else the CPU; ``'cpu'``, ``'cuda'``,
    ``'cuda:N'`` are obeyed, and one that is not here raises :class:`DeviceError` saying what is."""
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f'device {name!r}: there is no CUDA GPU here; use cpu (or auto)')
        if device.index is not None and device.index >= count:
            raise DeviceError(f'device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}')
    elif device.type != 'cpu':
        raise DeviceError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return device


def device_name(device: torch.device | str) -> str:
    """What a record says ran it: ``'cpu'`` or ``'cuda:0 (NVIDIA H100 80GB HBM3)'``."""
    device = torch.device(device)
    if device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f'cuda:{index} ({torch.cuda.get_device_name(index)})'
    return device.type
