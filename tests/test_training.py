"""The shared training machinery: loss goes down, runs resume exactly, failures stop cleanly, AMP runs on CPU."""
from pathlib import Path

import pytest
import torch

from mimbench.algorithms import NonFiniteLossError, NonFiniteWeightsError
from mimbench.engine.checkpoint import load_local_checkpoint
from mimbench.engine.runner import apply_cli, build_runner, load_config
from mimbench.errors import MimbenchError
from mimbench.registry import UnknownTypeError

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / 'tests/configs/tiny_mae.py')


def train(work_dir, max_iters=None, resume=None, amp=False, options=None, config=TINY, device_data=False):
    cfg = load_config(config, options)
    apply_cli(cfg, config, work_dir=str(work_dir), resume=resume, amp=amp, max_iters=max_iters,
              device_data=device_data)
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


@pytest.mark.parametrize('config', ['tiny_cae.py', 'tiny_mae.py'])
def test_a_bf16_run_resumes_to_exactly_the_uninterrupted_state_cae_teacher_included(tmp_path, config):
    # the schedule study's CAE and BEiT-style cells take hours in bf16 and resume across sessions; CAE's
    # momentum teacher is updated by a hook, outside the optimizer
    config = str(REPO / 'tests/configs' / config)
    straight = train(tmp_path / 'straight', max_iters=8, amp=True, config=config)
    train(tmp_path / 'split', max_iters=5, amp=True, config=config)     # mid-epoch (4 per epoch)
    resumed = train(tmp_path / 'split', max_iters=8, resume='auto', amp=True, config=config)
    assert resumed.iter == 8
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert loss_history(straight)[-3:].tolist() == loss_history(resumed)[-3:].tolist()


def test_checkpoints_load_on_current_torch(tmp_path):
    train(tmp_path, max_iters=4)
    ckpt = load_local_checkpoint(str(tmp_path / 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4 and 'message_hub' in ckpt and 'optimizer' in ckpt


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    options = {'custom_imports': dict(imports=['tests.fixtures.parts']),
               'custom_hooks': [dict(type='CorruptWeightsHook', at_iter=6)]}
    with pytest.raises(NonFiniteLossError, match=r'last checkpoint saved, \S*iter_4\.pth, holds finite weights'):
        train(tmp_path, options=options)
    last = (tmp_path / 'last_checkpoint').read_text().strip()
    assert last.endswith('iter_4.pth')
    state = load_local_checkpoint(last)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _finite(path):
    state = load_local_checkpoint(str(path))['state_dict']
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_weights_that_turn_non_finite_are_never_checkpointed_and_the_error_names_the_last_saved(tmp_path):
    # The run: a huge learning rate, a checkpoint every 2 iterations. Here the loss stays finite while a
    # step makes the weights NaN, just before the save at iteration 4 (at lr=1e9 the tiny model's loss is
    # already NaN before the first save).
    options = {'optim_wrapper.optimizer.lr': 1e4, 'default_hooks.checkpoint.interval': 2}
    with pytest.raises(NonFiniteWeightsError) as err:
        train(tmp_path, options=options)
    assert 'iter_4.pth was not written' in str(err.value) and 'lower the learning rate' in str(err.value)
    last = (tmp_path / 'last_checkpoint').read_text().strip()
    assert f'last checkpoint saved, {last},' in str(err.value)
    saved = sorted(tmp_path.glob('iter_*.pth'))
    assert [p.name for p in saved] == ['iter_2.pth'] and all(_finite(p) for p in saved)


def test_a_checkpoint_write_that_dies_leaves_no_partial_file_and_deletes_no_older_checkpoint(tmp_path, monkeypatch):
    from mmengine.fileio.backends.local_backend import LocalBackend
    real_put = LocalBackend.put

    def dies_half_way(self, data, filepath):   # a kill or a full disk in the middle of writing iter_6.pth
        if 'iter_6' in str(filepath):
            Path(filepath).write_bytes(data[:len(data) // 2])
            raise OSError('No space left on device')
        return real_put(self, data, filepath)
    monkeypatch.setattr(LocalBackend, 'put', dies_half_way)
    with pytest.raises(OSError, match='No space left'):   # max_keep_ckpts=2: iter_6 would replace iter_2
        train(tmp_path, max_iters=8, options={'default_hooks.checkpoint.interval': 2})
    assert sorted(p.name for p in tmp_path.iterdir() if 'iter_' in p.name) == ['iter_2.pth', 'iter_4.pth']
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(tmp_path / 'iter_4.pth')
    assert all(_finite(tmp_path / name) for name in ('iter_2.pth', 'iter_4.pth'))   # both load whole


def test_the_last_checkpoint_pointer_is_replaced_whole_never_truncated_in_place(tmp_path, monkeypatch):
    import builtins
    real_open, opened = builtins.open, []

    def spy(file, mode='r', *args, **kwargs):
        opened.append((str(file), mode))
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, 'open', spy)
    train(tmp_path, max_iters=4, options={'default_hooks.checkpoint.interval': 2})
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_4.pth')
    # open(..., 'w') empties the file first: a run killed then, or a reader, would find an empty pointer
    assert not [mode for file, mode in opened if file.endswith('last_checkpoint') and 'w' in mode]


@pytest.mark.parametrize('damage', ['torn checkpoint', 'empty pointer', 'missing pointer'])
def test_resume_falls_back_to_the_newest_checkpoint_that_loads_and_says_so(tmp_path, capsys, damage):
    straight = train(tmp_path / 'straight', max_iters=10)
    work = tmp_path / 'split'
    train(work, max_iters=6, options={'default_hooks.checkpoint.interval': 2})   # keeps iter_4 and iter_6
    if damage == 'torn checkpoint':
        data = (work / 'iter_6.pth').read_bytes()
        (work / 'iter_6.pth').write_bytes(data[:len(data) // 2])
        skipped, used = f'{work}/iter_6.pth (RuntimeError', work / 'iter_4.pth'
    elif damage == 'empty pointer':
        (work / 'last_checkpoint').write_text('')
        skipped, used = f'{work}/last_checkpoint (empty)', work / 'iter_6.pth'
    else:
        (work / 'last_checkpoint').unlink()
        skipped, used = f'{work}/last_checkpoint (missing)', work / 'iter_6.pth'
    capsys.readouterr()
    resumed = train(work, max_iters=10, resume='auto')
    line = next(line for line in capsys.readouterr().out.splitlines() if 'resume: skipped' in line)
    assert skipped in line and f'resuming from {used},' in line
    assert resumed.last_checkpoint == str(work / 'iter_10.pth')
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name   # the fallback checkpoint continues exactly


def test_a_work_dir_moved_whole_resumes_from_the_checkpoint_its_pointer_names(tmp_path, capsys):
    train(tmp_path / 'run', max_iters=6, options={'default_hooks.checkpoint.interval': 2})
    (tmp_path / 'run').rename(tmp_path / 'moved')   # the pointer still names .../run/iter_6.pth
    capsys.readouterr()
    resumed = train(tmp_path / 'moved', max_iters=8, resume='auto')
    assert 'resume: skipped' not in capsys.readouterr().out
    assert resumed.iter == 8 and resumed.last_checkpoint == str(tmp_path / 'moved/iter_8.pth')


def test_resume_with_another_batch_size_is_refused_unless_the_checkpoint_predates_the_record(tmp_path):
    train(tmp_path, max_iters=4)
    with pytest.raises(MimbenchError, match=r'batch size 16 per process on 1 process\(es\), this run has 8 on 1;.*'
                                            r'train_dataloader.batch_size=16'):
        train(tmp_path, max_iters=8, resume='auto', options={'train_dataloader.batch_size': 8})
    ckpt = load_local_checkpoint(str(tmp_path / 'iter_4.pth'))
    for key in ('train_batch_size', 'world_size'):   # as checkpoints written before the record existed
        del ckpt['meta'][key]
    torch.save(ckpt, tmp_path / 'iter_4.pth')
    assert train(tmp_path, max_iters=8, resume='auto', options={'train_dataloader.batch_size': 8}).iter == 8


def test_a_second_run_in_a_busy_work_dir_refuses_at_once_naming_the_holder(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from mimbench.lockfile import hold_lock

    work = tmp_path / 'run'
    work.mkdir()
    with hold_lock(work / '.train.lock'):   # this process stands for the first run
        second = subprocess.run([sys.executable, str(REPO / 'tools/train.py'), TINY, '--work-dir', str(work),
                                 '--max-iters', '2'], env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f'error: work dir {work} is in use: the training run {socket.gethostname()}:{os.getpid()} holds '
            f'{work}/.train.lock; wait for it to end or train into another --work-dir')
        assert os.listdir(work) == ['.train.lock']     # no log, config or checkpoint of the second run


def test_two_runs_built_within_one_second_keep_their_own_log_and_scalars(tmp_path, monkeypatch):
    import logging
    import time

    second = time.time()
    monkeypatch.setattr(time, 'time', lambda: second)   # mmengine names a run by its config and start second
    runners = []
    for name in ('a', 'b'):
        cfg = load_config(TINY)
        apply_cli(cfg, TINY, work_dir=str(tmp_path / name), max_iters=2)
        runners.append(build_runner(cfg))
    a, b = runners
    assert a.timestamp == b.timestamp
    assert a.logger is not b.logger and a.visualizer is not b.visualizer and a.message_hub is not b.message_hub
    for runner, name in zip(runners, 'ab'):
        log_files = [h.baseFilename for h in runner.logger.handlers if isinstance(h, logging.FileHandler)]
        assert log_files and all(Path(f).is_relative_to(tmp_path / name) for f in log_files)
        assert Path(runner.visualizer.get_backend('LocalVisBackend')._save_dir).is_relative_to(tmp_path / name)
    assert a.experiment_name.startswith('tiny_mae_') and a.experiment_name != b.experiment_name


def test_a_training_lock_left_by_a_dead_process_is_taken_over_and_released_at_the_end(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / '.train.lock').write_text(f'{socket.gethostname()}:{dead.pid}')   # a killed run's lock
    assert train(tmp_path, max_iters=2).iter == 2
    assert not (tmp_path / '.train.lock').exists()


@pytest.mark.skipif(not Path('/proc/self/stat').is_file(), reason='process start times come from /proc')
def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path):
    # a session killed with its runs leaves their locks; a later session's process may get the same pid
    import os
    import socket

    from mimbench.lockfile import LockHeld, _start_epoch, _start_time, hold_lock, live_holder
    here = f'{socket.gethostname()}:{os.getpid()}'
    lock = tmp_path / '.lock'
    assert live_holder(lock) is None
    assert live_holder(tmp_path) is None            # not a file: nothing to say, and no crash
    lock.write_text(f'{here} {_start_time(os.getpid())}')        # held by this very process: busy
    assert live_holder(lock) == here
    with pytest.raises(LockHeld, match=f'held by {here}$'):
        with hold_lock(lock):
            pass
    lock.write_text(f'{here} 1')                                  # the same pid, started at another time
    assert live_holder(lock) is None and lock.exists()            # only looks: takes nothing over
    with hold_lock(lock):
        assert lock.read_text() == f'{here} {_start_time(os.getpid())}'
    assert not lock.exists()

    # a lock of older code names no start time: one last touched before this process began was another's
    lock.write_text(here)
    with pytest.raises(LockHeld):
        with hold_lock(lock):
            pass
    before = _start_epoch(_start_time(os.getpid())) - 3600
    os.utime(lock, (before, before))
    with hold_lock(lock):
        pass


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
                          '--standalone', str(REPO / 'tools/train.py'), TINY, '--launcher', 'pytorch',
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


# ------------------------------------------------------------------------------------------------ on a GPU

@pytest.mark.cuda
@pytest.mark.parametrize('config', ['tiny_mae.py', 'tiny_cae.py'])
def test_on_a_gpu_training_runs_there_in_bf16_and_resumes_to_the_uninterrupted_state(tmp_path, config):
    config = str(REPO / 'tests/configs' / config)
    straight = train(tmp_path / 'straight', max_iters=8, amp=True, config=config)
    assert next(straight.model.parameters()).device.type == 'cuda'
    with straight.optim_wrapper.optim_context(straight.model):
        assert torch.is_autocast_enabled('cuda')
    assert all(torch.isfinite(torch.tensor(loss_history(straight))))
    train(tmp_path / 'split', max_iters=4, amp=True, config=config)
    resumed = train(tmp_path / 'split', max_iters=8, resume='auto', amp=True, config=config)
    assert resumed.iter == 8
    # GPU kernels may sum in another order from run to run (atomics): equal up to that, not bit for bit
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
