"""Precision and attention kernels: bfloat16 only where the device computes it natively, and on CPU in bf16
attention as plain products, whose backward is fast."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import mimbench.engine.precision as precision
import mimbench.machine as machine
from mimbench.engine.optim import AutocastOptimWrapper
from mimbench.engine.precision import ExplicitAttention, attention_kernel, explicit_attention, precision_context


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


def test_bf16_training_on_cpu_runs_attention_as_plain_products_and_fp32_keeps_torchs_choice():
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    model = torch.nn.Linear(1, 1)
    bf16 = _attention_under(wrapper.optim_context(model))
    # not the CPU flash kernel (slow bf16 backward) nor the math kernel (masked-row checks, float32 products)
    assert 'SoftmaxBackward0' in bf16 and 'BmmBackward0' in bf16
    assert not any('Flash' in name or 'SafeSoftmax' in name for name in bf16)
    fp32 = _attention_under(precision_context('cpu', torch.float32))
    assert 'ScaledDotProductFlashAttentionForCpuBackward0' in fp32     # torch's choice, the faster one in fp32
    asked = _attention_under(precision_context('cpu', torch.bfloat16, attention='flash'))
    assert 'ScaledDotProductFlashAttentionForCpuBackward0' in asked    # a named kernel is obeyed


def test_explicit_attention_is_torchs_attention_and_leaves_masked_calls_to_torch():
    q, k, v = torch.randn(2, 3, 17, 8), torch.randn(2, 3, 9, 8), torch.randn(2, 3, 9, 8)
    expected = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(explicit_attention(q, k, v), expected, rtol=1e-5, atol=1e-6)
    mask = torch.rand(17, 9) > 0.5
    mask[:, 0] = True      # no fully masked row (NaN)
    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with ExplicitAttention():
        torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, scale=0.5),
                                   explicit_attention(q, k, v, scale=0.5))
        assert torch.equal(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), masked)   # torch's, untouched


def test_explicit_attention_adds_a_float_mask_to_the_logits_as_torch_does():
    # a relative position bias arrives as a float attn_mask [H, Lq, Lk] (BEiT): it stays on plain products
    q = torch.randn(2, 3, 17, 8, requires_grad=True)
    bias = torch.randn(3, 17, 17)
    expected = F.scaled_dot_product_attention(q, q, q, attn_mask=bias)
    with ExplicitAttention():
        out = F.scaled_dot_product_attention(q, q, q, attn_mask=bias)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert 'SoftmaxBackward0' in _graph_names(out) and 'BmmBackward0' in _graph_names(out)


def test_a_gradient_checkpointed_encoder_trains_in_bf16_with_the_gradients_of_one_that_is_not():
    # the recomputation runs in the backward, outside the forward's attention mode: it is re-entered there
    from mimbench.models import ViT

    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        enc = ViT(arch='micro', img_size=32, patch_size=4, depth=2, drop_path_rate=0.2, rel_pos_bias=True)
        enc.set_grad_checkpointing(checkpointing)
        wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(enc.parameters(), lr=0.1))
        torch.manual_seed(1)
        with wrapper.optim_context(enc):
            loss = enc.forward_visible(torch.randn(2, 3, 32, 32), torch.arange(0, 64, 2).expand(2, -1))
        wrapper.backward(loss.float().square().mean())
        grads.append({name: p.grad for name, p in enc.named_parameters()})
    assert all(torch.equal(grads[1][name], grad) for name, grad in grads[0].items())


def test_the_automatic_attention_kernel_depends_on_device_and_precision():
    assert attention_kernel('auto', 'cpu', torch.bfloat16) == 'explicit'
    assert attention_kernel('auto', 'cpu', torch.float32) is None
    assert attention_kernel('auto', 'cuda', torch.bfloat16) is None
    assert attention_kernel('default', 'cpu', torch.bfloat16) is None
    assert attention_kernel('efficient', 'cuda', torch.bfloat16) == SDPBackend.EFFICIENT_ATTENTION
    with pytest.raises(ValueError, match="attention must be 'auto', 'default' or one of explicit, math, flash"):
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
    from pathlib import Path
    from mimbench.cli import benchmark as tool
    repo = Path(__file__).resolve().parents[1]
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


@pytest.mark.parametrize('has_units, resolved', [(True, 'bfloat16'), (False, 'float32')])
def test_auto_precision_trains_in_bf16_only_where_the_cpu_has_bf16_units(monkeypatch, has_units, resolved):
    from pathlib import Path

    from mimbench.engine.runner import apply_cli, load_config
    tiny = str(Path(__file__).parent / 'configs' / 'tiny_mae.py')
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: has_units)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    lines = []
    cfg = apply_cli(load_config(tiny), tiny, work_dir='unused', precision='auto', log=lines.append)
    assert lines == [f'precision auto: {resolved} on this CPU (' + (
        'it computes bfloat16 natively)' if has_units else
        'it has no native bfloat16 units: bfloat16 would run as float32 products, a little slower)')]
    assert (cfg.optim_wrapper.get('type') == 'AutocastOptimWrapper') == (resolved == 'bfloat16')


def test_float32_undoes_a_configs_autocast_and_a_bad_precision_is_one_user_error(tmp_path):
    from pathlib import Path

    from mimbench.engine.runner import apply_cli, build_runner, load_config
    from mimbench.errors import MimbenchError
    tiny = str(Path(__file__).parent / 'configs' / 'tiny_mae.py')
    def built_wrapper(cfg):
        runner = build_runner(cfg)
        return type(runner.build_optim_wrapper(runner.optim_wrapper)).__name__

    cfg = apply_cli(load_config(tiny), tiny, work_dir=str(tmp_path / 'a'), amp=True)
    assert built_wrapper(cfg) == 'AutocastOptimWrapper'
    cfg = apply_cli(cfg, tiny, work_dir=str(tmp_path / 'b'), precision='float32')
    assert built_wrapper(cfg) == 'OptimWrapper'
    with pytest.raises(MimbenchError, match="--precision must be one of float32, bfloat16, auto, got 'fp16'"):
        apply_cli(load_config(tiny), tiny, precision='fp16')


def test_a_step_profile_splits_the_time_by_kind_of_operation():
    from mimbench.analysis.benchmark import PROFILE_KINDS, step_profile
    a, b = torch.randn(256, 256), torch.randn(256, 256, requires_grad=True)
    opt = torch.optim.AdamW([b], lr=1e-3)

    def step():
        opt.zero_grad()
        (a @ b).bfloat16().float().softmax(dim=-1).sum().backward()   # a product, casts, a softmax
        opt.step()
    shares = step_profile(step, steps=2)
    assert list(shares) == [*PROFILE_KINDS, 'other', 'optimizer step']
    assert sum(shares[k] for k in [*PROFILE_KINDS, 'other']) == pytest.approx(1.0)
    assert all(shares[k] > 0 for k in PROFILE_KINDS)
    assert 0 < shares['optimizer step'] < 1


def test_the_matmul_rate_stops_growing_the_size_once_a_product_is_slow(monkeypatch):
    """A slow product (torch's own bf16 kernel on a CPU without bf16 units ran 50-100x below fp32) is measured at
    a small size, in about a second, not at 2048 in a minute; a fast one reaches the full size."""
    import mimbench.analysis.benchmark as benchmark
    sizes = []

    def fake_product(a, b, device, warm=True, clock=None):
        sizes.append(a.shape[0])
        return 2 * a.shape[0] ** 3 / 1e9 if a.shape[0] >= 512 else 0.001    # 1 GFLOP/s from 512 up
    monkeypatch.setattr(benchmark, '_time_product', fake_product)
    assert benchmark.matmul_gflops(n=2048, repeats=3) == pytest.approx(1.0)
    assert max(sizes) == 512
    sizes.clear()
    monkeypatch.setattr(benchmark, '_time_product',
                        lambda a, b, device, warm=True, clock=None: sizes.append(a.shape[0]) or 1e-4)
    benchmark.matmul_gflops(n=2048, repeats=3)
    assert max(sizes) == 2048


def test_a_cores_matmul_rate_counts_its_cpu_time_not_the_wall_clock_other_work_stretches(monkeypatch):
    import time
    import mimbench.analysis.benchmark as benchmark
    ticks = iter(range(10 ** 6))
    # a wall clock on which every product seems to take a whole second, as when other processes hold the cores
    monkeypatch.setattr(benchmark.time, 'perf_counter', lambda: float(next(ticks)))
    threads = torch.get_num_threads()
    seen = []
    real_product = benchmark._time_product

    def product(a, b, device, warm=True, clock=time.perf_counter):
        seen.append(torch.get_num_threads())
        return real_product(a, b, device, warm, clock)
    monkeypatch.setattr(benchmark, '_time_product', product)
    assert benchmark.matmul_gflops(n=512, repeats=2) < 0.3          # 2 x 512^3 flops "in a second"
    assert benchmark.matmul_gflops(n=512, repeats=2, per_core=True) > 1.0
    assert seen[-1] == 1 and torch.get_num_threads() == threads     # one thread, and the count restored after
    with pytest.raises(ValueError, match='per_core'):
        benchmark.matmul_gflops(device='meta', per_core=True)


@pytest.mark.parametrize('has_units, lines', [(False, 1), (True, 0)])
def test_bf16_training_on_a_cpu_without_bf16_units_says_once_how_its_products_run(monkeypatch, has_units, lines):
    import mimbench.engine.optim as optim
    said = []
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: has_units)
    monkeypatch.setattr(optim, 'print_log', lambda message, **kw: said.append(message))
    model = torch.nn.Linear(4, 4)
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    for _ in range(3):
        with wrapper.optim_context(model):
            assert model(torch.randn(2, 4)).dtype == torch.bfloat16
    assert len(said) == lines and all('float32 products of the bf16 operands' in line for line in said)


@pytest.fixture
def counted_products(monkeypatch):
    """A CPU without bf16 units, and the list of every bf16 product Float32Products computes in float32."""
    from mimbench.engine.precision import Float32Products
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: False)
    seen = []
    dispatch = Float32Products.__torch_dispatch__

    def counting(self, func, types, args=(), kwargs=None):
        out = dispatch(self, func, types, args, kwargs)
        if func in precision._PRODUCTS and all(a.dtype == torch.bfloat16 for a in tree_leaves(args)
                                                if isinstance(a, torch.Tensor)):
            seen.append(func.__name__)
        return out
    monkeypatch.setattr(Float32Products, '__torch_dispatch__', counting)
    return seen


class _Bf16Kernels(TorchDispatchMode):
    """Below every mode the code under test enters: records each product that still reaches torch with a bf16
    operand, i.e. runs on torch's own (on this CPU: 50-100x slower) bf16 kernel. Fused attention kernels are
    left to torch on purpose (Float32Products' docstring)."""
    NAMES = ('mm', 'addmm', 'bmm', 'baddbmm', 'addbmm', 'mv', 'addmv', 'dot', 'linear', 'matmul', 'einsum',
             'tensordot', 'convolution', 'convolution_backward', '_convolution', 'conv1d', 'conv2d', 'conv3d',
             'mkldnn_convolution', '_slow_conv2d_forward', '_slow_conv2d_backward')

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split('.')[0]
        if name in self.NAMES and any(isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16
                                      for t in tree_leaves((args, kwargs))):
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def bf16_kernels():
    """The products the test body sends to torch's own bf16 kernels (should be none)."""
    with _Bf16Kernels() as recorder:
        yield recorder.seen


def test_a_bf16_product_without_bf16_units_is_the_float32_product_of_its_bf16_operands_rounded_once():
    """What a bf16 unit computes: the same bits as torch's own bf16 kernel but for the order of the float32 sum
    (measured 99.98% bit-identical at this size; the rest one unit in the last place)."""
    from mimbench.engine.precision import Float32Products
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(128, 192, generator=g).bfloat16(), torch.randn(192, 160, generator=g).bfloat16()
    bias = torch.randn(160, generator=g).bfloat16()
    with Float32Products():
        product, affine = a @ b, torch.addmm(bias, a, b)
    assert product.dtype == affine.dtype == torch.bfloat16
    assert torch.equal(product, (a.float() @ b.float()).bfloat16())
    assert torch.equal(affine, torch.addmm(bias.float(), a.float(), b.float()).bfloat16())
    torch_own = a @ b                     # torch's bf16 kernel: bf16 operands, float32 sums in another order
    assert (product == torch_own).float().mean() > 0.99
    ulp = torch_own.float().abs() * 2 ** -7
    assert ((product.float() - torch_own.float()).abs() <= ulp).all()


def test_under_inference_mode_composite_products_are_taken_apart_so_none_runs_on_torchs_bf16_kernel(bf16_kernels):
    """Without autograd, conv1d, tensordot and the like reach the mode whole: the products inside them must
    still run in float32."""
    from mimbench.engine.precision import Float32Products
    x, w = torch.randn(2, 4, 16).bfloat16(), torch.randn(6, 4, 3).bfloat16()
    with torch.inference_mode(), Float32Products():
        conv = F.conv1d(x, w, padding='same')
        dot = torch.tensordot(x, x, dims=([1, 2], [1, 2]))
    assert bf16_kernels == []
    assert conv.dtype == dot.dtype == torch.bfloat16
    assert torch.equal(conv, F.conv1d(x.float(), w.float(), padding='same').bfloat16())


def test_float32_products_leave_other_precisions_and_mixed_operands_as_torch_has_them():
    from mimbench.engine.precision import Float32Products
    a = torch.randn(8, 8)
    with Float32Products():
        assert (a @ a).dtype == torch.float32
        assert torch.equal(a @ a, torch.mm(a, a))
        with pytest.raises(RuntimeError):          # torch refuses float32 @ bf16; so does the mode
            a @ a.bfloat16()


def test_the_bf16_products_context_is_float32_products_only_on_a_cpu_without_bf16_units(monkeypatch):
    from mimbench.engine.precision import Float32Products, bfloat16_products
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: False)
    assert isinstance(bfloat16_products('cpu'), Float32Products)
    assert not isinstance(bfloat16_products('cuda'), Float32Products)
    monkeypatch.setattr(machine, 'cpu_has_bfloat16_units', lambda: True)
    assert not isinstance(bfloat16_products('cpu'), Float32Products)


def test_a_bf16_training_step_without_bf16_units_runs_forward_and_backward_products_in_float32(counted_products,
                                                                                                bf16_kernels):
    """The forward's products run inside the optimizer wrapper's context, the backward's in update_params:
    both must be covered, or the backward would fall back to torch's 50-100x slower bf16 kernel."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, stride=4), torch.nn.Flatten(), torch.nn.Linear(32, 4))
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        loss = model(torch.randn(2, 3, 8, 8)).float().square().mean()
    forward = list(counted_products)
    wrapper.update_params(loss)
    assert sorted(forward) == ['addmm.default', 'convolution.default']
    assert sorted(counted_products[len(forward):]) == ['convolution_backward.default', 'mm.default', 'mm.default']
    assert bf16_kernels == []


def _tiny_vit():
    from pathlib import Path
    from mimbench.engine.runner import load_config
    from mimbench.registry import ENCODERS
    cfg = load_config(str(Path(__file__).parent / 'configs/tiny_mae.py'))    # 16 px, patch 4, width 32, depth 2
    torch.manual_seed(0)
    return ENCODERS.build(cfg.model.encoder)


def test_every_evaluation_that_computes_in_bf16_runs_its_products_in_float32_without_bf16_units(counted_products,
                                                                                                 bf16_kernels):
    """Features from a bf16 encoder copy, the attentive probe's bf16 token products (forward and backward),
    fine-tuning's bf16 test pass: each would otherwise fall back to torch's 50-100x slower bf16 kernel."""
    from mimbench.data import SyntheticImages
    from mimbench.evaluation import Features, attentive_probe, extract_features
    from mimbench.evaluation.finetune import Classifier, evaluate_classifier
    from mimbench.registry import MODELS
    pre, images = MODELS.build(dict(type='ImagePreprocessor')), SyntheticImages(num_images=8, image_size=16)

    extract_features(_tiny_vit(), pre, images, ('mean',), dtype='bfloat16')   # inference mode: composites whole
    assert {'linear.default', 'matmul.default', 'conv2d.default'} <= set(counted_products)
    counted_products.clear()
    tokens = Features(torch.randn(16, 5, 8).half(), torch.arange(16) % 2)
    attentive_probe(tokens, tokens, 2, num_heads=2, epochs=1, batch_size=8, warmup_epochs=0, token_dtype='bfloat16')
    assert 'bmm.default' in counted_products and 'mm.default' in counted_products      # backward: mm
    counted_products.clear()
    evaluate_classifier(Classifier(_tiny_vit(), 2), pre, images, amp=True)
    assert {'linear.default', 'conv2d.default'} <= set(counted_products)
    counted_products.clear()
    extract_features(_tiny_vit(), pre, images, ('mean',), dtype='float32')
    assert counted_products == [] and bf16_kernels == []


def test_the_bf16_agreement_benchmark_compares_each_way_of_training_with_torchs_bf16_kernels():
    from mimbench.analysis.benchmark import bf16_agreement
    torch.manual_seed(0)
    from mimbench.registry import MODELS
    from mimbench.engine.runner import load_config
    from pathlib import Path
    model = MODELS.build(load_config(str(Path(__file__).parent / 'configs/tiny_mae.py')).model)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = bf16_agreement(model, 16, batch_size=4, steps=3)
    finally:
        torch.set_num_threads(threads)
    assert set(result['losses']) == {'float32', 'bf16 torch', 'bf16 float32 products', 'bf16 torch, 1 thread'}
    assert all(len(losses) == 3 for losses in result['losses'].values())
    diff = result['vs bf16 torch']
    assert set(diff) == {'float32', 'bf16 float32 products', 'bf16 torch, 1 thread'}
    # float32 products of bf16 operands are bf16 arithmetic: nearer torch's bf16 kernels than float32 is (here
    # 5.4e-5 against 8.2e-4; over 2 steps at batch 4 of the CAE test model the order turned round)
    assert diff['bf16 float32 products']['max_loss_diff'] < diff['float32']['max_loss_diff'] / 2
    # float32 always trains to other weights. Float32 products part from torch's fallback kernel on a CPU without
    # bf16 units, but may give a bf16 unit's very bits: 0.0 apart on the AVX512-BF16 EPYC (2026-12-07), whose
    # kernel sums these small products in the same order
    assert diff['float32']['weight_diff'] > 0
    if not machine.has_native_bfloat16('cpu'):
        assert diff['bf16 float32 products']['weight_diff'] > 0


@pytest.mark.parametrize('flags, named', [(['--compile'], '--compile'), (['--iters', '5'], '--iters'),
                                          (['--precision', 'float32', '--profile', '2'], '--precision, --profile'),
                                          (['--device', 'cuda'], '--device')])
def test_the_bf16_agreement_benchmark_refuses_the_timing_flags_it_would_ignore(capsys, flags, named):
    from pathlib import Path
    from mimbench.cli import benchmark as tool
    config = str(Path(__file__).parent / 'configs/tiny_mae.py')
    with pytest.raises(SystemExit) as exit_:
        tool.main([config, '--bf16-agreement', '2', *flags])
    assert str(exit_.value).startswith(f'error: --bf16-agreement trains its own fixed runs on the CPU and takes no '
                                       f'{named};')


def test_the_benchmark_times_and_counts_a_bf16_step_without_torchs_bf16_kernel_on_a_cpu_without_units(
        counted_products, bf16_kernels):
    """Its timed steps and its FLOP count run the backward too: each inside the products' mode, as training."""
    from mimbench.analysis import benchmark_algorithm
    torch.manual_seed(0)
    from mimbench.registry import MODELS
    from mimbench.engine.runner import load_config
    from pathlib import Path
    model = MODELS.build(load_config(str(Path(__file__).parent / 'configs/tiny_mae.py')).model)
    benchmark_algorithm(model, 16, 4, warmup=0, iters=1, amp=True, with_matmul=False)
    assert 'convolution_backward.default' in counted_products and bf16_kernels == []
