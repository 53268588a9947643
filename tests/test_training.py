"""The shared training machinery: loss goes down, runs resume exactly, failures stop cleanly, AMP runs on CPU."""
import uuid
from pathlib import Path

import pytest
import torch

from mimbench.algorithms import NonFiniteLossError
from mimbench.engine.checkpoint import load_local_checkpoint
from mimbench.engine.runner import apply_cli, build_runner, load_config
from mimbench.registry import UnknownTypeError

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / 'tests/configs/tiny_mae.py')


def train(work_dir, max_iters=None, resume=None, amp=False, options=None, config=TINY):
    cfg = load_config(config, options)
    apply_cli(cfg, config, work_dir=str(work_dir), resume=resume, amp=amp, max_iters=max_iters)
    cfg.experiment_name = uuid.uuid4().hex  # mmengine keys its loggers by experiment name
    runner = build_runner(cfg)
    runner.train()
    return runner


def loss_history(runner):
    values, _ = runner.message_hub.get_scalar('train/loss').data
    return values


def test_thirty_steps_on_synthetic_images_lower_the_loss(tmp_path):
    runner = train(tmp_path, max_iters=30)
    losses = loss_history(runner)
    assert len(losses) == 30
    assert losses[-5:].mean() < 0.7 * losses[:5].mean()


def test_max_iters_stops_early_but_keeps_the_schedule(tmp_path):
    runner = train(tmp_path, max_iters=6)
    assert runner.iter == 6
    assert runner.train_loop.schedule_iters == 40
    # Still early in a 40-iteration cosine: the learning rate has not decayed to the end value.
    assert runner.optim_wrapper.get_lr()['lr'][0] > 0.5 * 2e-2 * 16 / 256
    assert (tmp_path / 'iter_6.pth').exists()


def test_resume_continues_to_exactly_the_uninterrupted_state(tmp_path):
    straight = train(tmp_path / 'straight', max_iters=10)
    train(tmp_path / 'split', max_iters=6)   # ends with a checkpoint at iteration 6, mid-epoch (4 per epoch)
    resumed = train(tmp_path / 'split', max_iters=10, resume='auto')
    assert resumed.iter == 10
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    opt_a = straight.optim_wrapper.optimizer.state_dict()['state']
    opt_b = resumed.optim_wrapper.optimizer.state_dict()['state']
    assert all(torch.equal(opt_a[k]['exp_avg'], opt_b[k]['exp_avg']) for k in opt_a)


def test_checkpoints_load_on_current_torch(tmp_path):
    train(tmp_path, max_iters=4)
    ckpt = load_local_checkpoint(str(tmp_path / 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4 and 'message_hub' in ckpt and 'optimizer' in ckpt


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    options = {'custom_imports': dict(imports=['tests.fixtures.parts']),
               'custom_hooks': [dict(type='CorruptWeightsHook', at_iter=6)]}
    with pytest.raises(NonFiniteLossError):
        train(tmp_path, options=options)
    last = (tmp_path / 'last_checkpoint').read_text().strip()
    assert last.endswith('iter_4.pth')
    state = load_local_checkpoint(last)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_amp_runs_on_cpu_with_bfloat16_autocast(tmp_path):
    runner = train(tmp_path, max_iters=5, amp=True)
    assert type(runner.optim_wrapper).__name__ == 'AutocastOptimWrapper'
    with runner.optim_wrapper.optim_context(runner.model):
        assert torch.is_autocast_enabled('cpu')
        out = runner.model.encoder.blocks[0].mlp.fc1(torch.randn(2, 32))
    assert out.dtype == torch.bfloat16          # matmuls run in bfloat16 (norms stay float32 under autocast)
    assert all(torch.isfinite(torch.tensor(loss_history(runner))))


def test_an_unknown_type_in_the_config_fails_before_training_and_lists_choices(tmp_path):
    with pytest.raises(UnknownTypeError, match="unknown dataset type 'Cifar'.*SyntheticImages"):
        train(tmp_path, options={'train_dataloader.dataset.type': 'Cifar'})
    assert not list(tmp_path.glob('*.pth'))


def _env():
    import os
    return {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_state(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / 'slow_tiny.py'
    config.write_text(f"_base_ = ['{TINY}']\n"
                      "custom_imports = dict(imports=['tests.fixtures.parts'])\n"
                      "custom_hooks = [dict(type='SlowDownHook', seconds=0.1)]\n"
                      "default_hooks = dict(checkpoint=dict(interval=2))\n")
    args = [sys.executable, str(REPO / 'tools/train.py'), str(config), '--max-iters', '24']
    subprocess.run(args + ['--work-dir', str(tmp_path / 'straight')], env=_env(), check=True,
                   capture_output=True)
    killed = subprocess.Popen(args + ['--work-dir', str(tmp_path / 'killed')], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / 'killed/iter_4.pth').exists() and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / 'killed/iter_24.pth').exists(), 'the run finished before it was killed'
    subprocess.run(args + ['--work-dir', str(tmp_path / 'killed'), '--resume'], env=_env(), check=True,
                   capture_output=True)
    a = load_local_checkpoint(str(tmp_path / 'straight/iter_24.pth'))['state_dict']
    b = load_local_checkpoint(str(tmp_path / 'killed/iter_24.pth'))['state_dict']
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
def test_two_process_cpu_ddp_matches_one_process(tmp_path):
    """Two gloo processes with batch 8 each must follow the single-process run with batch 16: same images per
    step (the sampler interleaves ranks), same masks (a fixed masker), no augmentation."""
    import subprocess
    import sys

    common = ['--max-iters', '6', '--cfg-options', 'custom_imports.imports=[tests.fixtures.parts]',
              'model.masker.type=FixedMasker', 'train_dataloader.dataset.pipeline=[]']
    subprocess.run([sys.executable, str(REPO / 'tools/train.py'), TINY, '--work-dir', str(tmp_path / 'one'),
                    *common, 'train_dataloader.batch_size=16'], env=_env(), check=True, capture_output=True)
    ddp = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                          '--master_port', '29517', str(REPO / 'tools/train.py'), TINY, '--launcher', 'pytorch',
                          '--work-dir', str(tmp_path / 'two'), *common, 'train_dataloader.batch_size=8'],
                         env=_env(), capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_local_checkpoint(str(tmp_path / 'one/iter_6.pth'))['state_dict']
    b = load_local_checkpoint(str(tmp_path / 'two/iter_6.pth'))['state_dict']
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        if name.endswith('attn.qkv.bias'):
            # The key bias shifts every attention logit of a query equally, so softmax cancels it and its
            # true gradient is 0; Adam divides the float noise that remains by its own tiny magnitude. Only the
            # query and value biases carry signal.
            dim = x.numel() // 3
            x, y = torch.cat([x[:dim], x[2 * dim:]]), torch.cat([y[:dim], y[2 * dim:]])
        torch.testing.assert_close(x, y, atol=2e-5, rtol=1e-4, msg=name)


def test_no_weight_decay_on_biases_norms_and_embeddings(tmp_path):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    from mimbench.registry import MODELS

    cfg = load_config(TINY, {'model.mask_token_in_encoder': True})
    model = MODELS.build(cfg.model)
    with DefaultScope.overwrite_default_scope('mimbench'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay_of = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    for name, param in model.named_parameters():
        no_decay = name.endswith('.bias') or 'norm' in name or name.split('.')[-1] in ('cls_token', 'mask_token')
        assert decay_of[id(param)] == (0.0 if no_decay else 0.05), name
