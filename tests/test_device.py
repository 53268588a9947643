"""Any device: evaluation (extraction, probes, kNN, fine-tuning) runs where it is told, 'auto' meaning the GPU
when there is one, and a record says where it ran. Tests marked ``cuda`` check on a GPU that the result is the
CPU's up to rounding; they skip without one (tools/device_check.py runs them)."""
import pytest
import torch

from mimbench.evaluation import evaluate, extract_features, knn_accuracy, linear_probe, load_encoder
from mimbench.evaluation.attentive import attentive_probe
from mimbench.machine import DeviceError, resolve_device
from tests.fixtures.tools import load_tool
from tests.test_evaluation import TINY, eval_config, make_checkpoint, synthetic


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert resolve_device('auto') == torch.device('cpu') and resolve_device(None) == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert resolve_device('auto') == torch.device('cuda')
    assert resolve_device('cpu') == torch.device('cpu')


def test_a_device_that_is_not_here_is_refused_saying_what_is(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(DeviceError, match="device 'cuda': there is no CUDA GPU here; use cpu"):
        resolve_device('cuda')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    with pytest.raises(DeviceError, match="has 2 CUDA GPU\\(s\\), cuda:0 to cuda:1"):
        resolve_device('cuda:2')
    with pytest.raises(DeviceError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        resolve_device('gpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal where there is no GPU')
def test_the_eval_tool_refuses_a_missing_gpu_in_one_line(tmp_path, capsys):
    make_checkpoint(tmp_path / 'run/iter_2.pth')
    with pytest.raises(SystemExit) as exit_:
        load_tool('eval').main([str(tmp_path / 'run/iter_2.pth'), '--protocol', 'knn', '--device', 'cuda'])
    assert str(exit_.value) == "error: device 'cuda': there is no CUDA GPU here; use cpu (or auto)"


def test_an_evaluation_record_says_where_it_ran(tmp_path):
    make_checkpoint(tmp_path / 'run/iter_2.pth')
    record = evaluate('knn', str(tmp_path / 'run/iter_2.pth'), eval_cfg=eval_config('knn'), device='cpu',
                      out=str(tmp_path / 'knn.json'), cache_dir=str(tmp_path / 'cache'))
    assert record['device'] == 'cpu'


# ------------------------------------------------------------------------------------------------ on a GPU

@pytest.mark.cuda
def test_features_on_the_gpu_are_the_cpus_up_to_rounding():
    from mimbench.data import SyntheticImages
    loaded = load_encoder(None, TINY, seed=0)
    data = SyntheticImages(num_images=64, image_size=16, num_classes=4, seed=0)
    cpu = extract_features(loaded.encoder, loaded.preprocessor, data, ('cls', 'tokens'), batch_size=32)
    loaded.encoder.cuda()
    gpu = extract_features(loaded.encoder, loaded.preprocessor, data, ('cls', 'tokens'), batch_size=32)
    assert gpu['cls'].features.device.type == 'cpu'        # features always come back to host memory
    torch.testing.assert_close(gpu['cls'].features, cpu['cls'].features, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(gpu['tokens'].features.float(), cpu['tokens'].features.float(), atol=2e-2,
                               rtol=1e-2)


@pytest.mark.cuda
def test_probes_and_knn_on_the_gpu_reach_the_cpus_accuracy():
    train, test = synthetic(600, 16, seed=0), synthetic(300, 16, seed=1)
    args = dict(epochs=5, batch_size=100, base_lr=0.1, warmup_epochs=1)
    assert linear_probe(train, test, 3, device='cuda', **args).accuracy == pytest.approx(
        linear_probe(train, test, 3, device='cpu', **args).accuracy, abs=1.0)
    assert knn_accuracy(train, test, 3, k=5, device='cuda') == knn_accuracy(train, test, 3, k=5, device='cpu')
    tokens = type(train)(train.features.view(600, 4, 4).repeat(1, 1, 2), train.labels)
    tokens_test = type(test)(test.features.view(300, 4, 4).repeat(1, 1, 2), test.labels)
    on = {d: attentive_probe(tokens, tokens_test, 3, num_heads=2, token_dtype='float32', device=d, **args)
          for d in ('cpu', 'cuda')}
    assert on['cuda'].accuracy == pytest.approx(on['cpu'].accuracy, abs=2.0)
    assert next(on['cuda'].head.parameters()).device.type == 'cuda'


@pytest.mark.cuda
def test_fine_tuning_on_the_gpu_trains_and_reports_the_device(tmp_path):
    make_checkpoint(tmp_path / 'ckpt.pth')
    record = evaluate('finetune', str(tmp_path / 'ckpt.pth'), eval_cfg=eval_config('finetune', amp=True),
                      max_iters=3, device='cuda', out=str(tmp_path / 'ft.json'))
    assert record['device'].startswith('cuda:0 (') and record['hparams']['iters'] == 3


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.cuda)])
def test_the_relative_position_bias_trains_in_bf16_as_in_float32(device):
    # BEiT's bias reaches every block as a float attention mask that needs a gradient, and torch's fused GPU
    # kernels differ in which masks they take: whichever kernel runs, bf16 gives float32's gradient up to rounding
    from mimbench.engine.optim import AutocastOptimWrapper
    from mimbench.models import ViT

    torch.manual_seed(0)
    enc = ViT(arch='micro', img_size=32, patch_size=4, depth=2, rel_pos_bias=True, use_mask_token=True)
    table = enc.rel_pos_bias.relative_position_bias_table
    with torch.no_grad():
        table.normal_(std=0.5)
    imgs, ids_keep = torch.randn(8, 3, 32, 32), torch.arange(0, 64, 4).expand(8, -1)
    mask = torch.rand(8, 64, generator=torch.Generator().manual_seed(0)) < 0.4

    readout = torch.randn(192)      # a fixed direction: the tokens are layer-normed, their squares sum to ~D

    def loss():     # both paths: a subset's own entries (MAE, CAE) and all patches with [M] (BEiT)
        return ((enc.forward_visible(imgs, ids_keep).float() @ readout).square().mean()
                + (enc.forward_masked(imgs, mask).float() @ readout).square().mean())
    loss().backward()
    expected = table.grad.clone()
    enc.zero_grad()
    enc.to(device)
    imgs, ids_keep, mask, readout = imgs.to(device), ids_keep.to(device), mask.to(device), readout.to(device)
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(enc.parameters(), lr=0.1))
    with wrapper.optim_context(enc):
        bf16 = loss()
    wrapper.backward(bf16)
    assert (table.grad.cpu() - expected).norm() < 0.05 * expected.norm()     # 1.2% on the AVX2 EPYC, 2026-12-07
