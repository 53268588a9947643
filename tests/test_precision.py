"""Precision and attention kernels: bfloat16 only where the device computes it natively, and on CPU in bf16 the
attention kernel whose backward is fast."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

import mimbench.machine as machine
from mimbench.engine.optim import AutocastOptimWrapper, attention_backend, precision_context


def _graph_names(out: torch.Tensor) -> set[str]:
    """The names of every autograd node behind ``out``: which kernels its backward will run."""
    names, todo, seen = set(), [out.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    return names


def _attention_under(context) -> set[str]:
    q = torch.randn(2, 3, 17, 8, requires_grad=True)
    with context:
        out = F.scaled_dot_product_attention(q, q, q)
    return _graph_names(out)


def test_bf16_training_on_cpu_runs_attention_on_the_math_kernel_and_fp32_keeps_torchs_choice():
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    model = torch.nn.Linear(1, 1)
    bf16 = _attention_under(wrapper.optim_context(model))
    assert not any('Flash' in name for name in bf16)                  # the CPU flash backward is the slow one
    fp32 = _attention_under(precision_context('cpu', torch.float32))
    assert 'ScaledDotProductFlashAttentionForCpuBackward0' in fp32     # torch's choice, the faster one in fp32
    asked = _attention_under(precision_context('cpu', torch.bfloat16, attention='flash'))
    assert 'ScaledDotProductFlashAttentionForCpuBackward0' in asked    # a named kernel is obeyed


def test_the_automatic_attention_kernel_depends_on_device_and_precision():
    assert attention_backend('auto', 'cpu', torch.bfloat16) == SDPBackend.MATH
    assert attention_backend('auto', 'cpu', torch.float32) is None
    assert attention_backend('auto', 'cuda', torch.bfloat16) is None
    assert attention_backend('default', 'cpu', torch.bfloat16) is None
    assert attention_backend('efficient', 'cuda', torch.bfloat16) == SDPBackend.EFFICIENT_ATTENTION
    with pytest.raises(ValueError, match="attention must be 'auto', 'default' or one of math, flash"):
        AutocastOptimWrapper(optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
                             attention='fastest')


def test_bf16_autocast_computes_in_bf16_and_fp32_does_not_cast():
    x, w = torch.randn(4, 8), torch.randn(8, 8)
    with precision_context('cpu', torch.bfloat16):
        assert (x @ w).dtype == torch.bfloat16
    with precision_context('cpu', torch.float32):
        assert (x @ w).dtype == torch.float32


@pytest.mark.parametrize('flags, native', [('fpu sse avx512f avx512_bf16', True), ('fpu amx_bf16 amx_tile', True),
                                           ('fpu sse avx2 avx512f', False), (None, False)])
def test_a_cpu_has_bf16_units_only_when_its_flags_say_so(monkeypatch, flags, native):
    machine.cpu_has_bfloat16_units.cache_clear()
    monkeypatch.setattr(machine, 'cpuinfo_field', lambda name: flags if name == 'flags' else None)
    try:
        assert machine.cpu_has_bfloat16_units() is native
        assert machine.resolve_dtype('auto', 'cpu') == (torch.bfloat16 if native else torch.float32)
    finally:
        machine.cpu_has_bfloat16_units.cache_clear()


def test_the_benchmark_times_both_precisions_in_one_run_and_ends_with_their_ratio(tmp_path, capsys):
    import json
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / 'tools'))
    try:
        import benchmark as tool
    finally:
        sys.path.remove(str(repo / 'tools'))
    tool.main([str(repo / 'tests/configs/tiny_mae.py'), '--iters', '1', '--warmup', '0', '--batch-size', '4',
               '--attention', 'auto', 'flash', '--json', str(tmp_path / 'out.json')])
    lines = capsys.readouterr().out.strip().splitlines()
    records = json.loads((tmp_path / 'out.json').read_text())
    assert [r['dtype'] for r in records] == ['float32', 'bfloat16 autocast, attention auto',
                                             'bfloat16 autocast, attention flash']
    assert all(r['matmul_gflops'] > 0 and r['train_img_per_s'] > 0 for r in records)
    ratio = records[1]['train_img_per_s'] / records[0]['train_img_per_s']
    assert lines[-2].startswith('bfloat16 autocast, attention auto train step:') and f'{ratio:.2f}x' in lines[-2]
    assert lines[-1].startswith('bfloat16 autocast, attention flash train step:')
