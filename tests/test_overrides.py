"""``--cfg-options`` and the switches beside it, as the user meets them.

A misspelled key is refused before anything runs, naming the closest valid key; a valid one goes in as mmengine
would put it; a part's ``type`` swapped from the command line drops the old arguments the new type does not take
and says so in one ``note:`` line. Every tool turns a missing file, a misspelled key or a bad value into one
``error:`` line, not a traceback.
"""
import os
import re
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mimbench.config_files import read_config
from mimbench.engine.runner import apply_cli, load_config
from mimbench.errors import MimbenchError
from mimbench.evaluation import load_eval_config
from mimbench.masking import GridMasker
from mimbench.overrides import UnknownKeyError, apply_overrides
from mimbench.registry import MODELS, VISUALIZERS, UnknownTypeError
from tests.fixtures.tools import load_tool

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / 'tests/configs/tiny_mae.py')    # RandomMasker(ratio=0.75) on a 4x4 grid, AdamW, 2 pipeline steps


def _quiet(_):
    pass


# ------------------------------------------------------------------------------------------- refused keys

@pytest.mark.parametrize('options, message', [
    ({'train_dataloadr.batch_size': 32}, "unknown config key 'train_dataloadr.batch_size' in the overrides: the "
                                         "config has no 'train_dataloadr'.*did you mean 'train_dataloader.batch_size'"),
    # a hook's argument reaches the hook only at the first checkpoint, after training: refused up front instead
    ({'default_hooks.checkpoint.intervl': 5},
     "CheckpointHook takes no argument 'intervl'; did you mean 'default_hooks.checkpoint.interval'"),
    ({'model.masker.ratoi': 0.5}, "RandomMasker takes no argument 'ratoi'; did you mean 'model.masker.ratio'"),
    ({'train_dataloader.num_wokers': 2}, "did you mean 'train_dataloader.num_workers'"),
    ({'param_scheduler.1.eta_mn': 0.0}, "CosineAnnealingLR .* did you mean 'param_scheduler.1.eta_min'"),
    ({'train_dataloader.dataset.pipeline.2.size': 12}, r'is a list of 2 entries \(indices 0-1\)'),
    ({'model.masker.ratio.low': 0.5}, "'model.masker.ratio' is 0.75 in the config, not a dict"),
    # the new type's arguments are checked, not the old one's
    ({'model.masker.type': 'GridMasker', 'model.masker.ratio': 0.5}, "GridMasker takes no argument 'ratio'"),
    ({'custom_hooks': [dict(type='ThroughputHook', intervl=3)]}, "ThroughputHook takes no argument 'intervl'"),
    ({'custom_imports.improts': ['tests.fixtures.parts']}, "did you mean 'custom_imports.imports'"),
], ids=['top-level', 'hook-argument', 'model-part', 'dataloader', 'list-entry', 'index-out-of-range',
        'below-a-number', 'argument-of-the-new-type', 'part-in-a-new-list', 'custom-imports'])
def test_a_key_nothing_would_read_is_refused_naming_it_and_the_closest_valid_key(options, message):
    with pytest.raises(UnknownKeyError, match=message):
        load_config(TINY, options)


def test_a_refused_override_leaves_the_config_as_it_was():
    cfg = load_config(TINY)
    before = cfg.to_dict()
    with pytest.raises(UnknownKeyError):    # the valid key beside the typo is not half applied
        apply_overrides(cfg, {'train_dataloader.batch_size': 8, 'model.masker.ratoi': 0.5}, log=_quiet)
    assert cfg.to_dict() == before


def test_a_config_changed_by_its_reader_or_by_an_override_does_not_change_the_next_read():
    first = load_config(TINY, {'model.masker.ratio': 0.5})
    first.model.encoder.depth = 99
    again = load_config(TINY)
    assert again.model.masker.ratio == 0.75 and again.model.encoder.depth != 99


def test_an_edited_config_or_an_edited_base_it_inherits_is_read_again(tmp_path, monkeypatch):
    (tmp_path / '_base_').mkdir()
    base, child = tmp_path / '_base_' / 'runtime.py', tmp_path / 'child.py'
    base.write_text('seed = 1\nlr = 0.1\n')
    child.write_text("_base_ = ['_base_/runtime.py']\nlr = 0.2\n")
    assert (read_config(child).seed, read_config(child).lr) == (1, 0.2)
    stat = base.stat()
    base.write_text('seed = 2\nlr = 0.1\n')        # same size, and on a coarse clock the same mtime
    os.utime(base, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert read_config(child).seed == 2
    child.write_text("_base_ = ['_base_/runtime.py']\nlr = 0.3\n")
    assert read_config(child).lr == 0.3
    # a value from the environment is not in the files: read again every time
    env = tmp_path / 'env.py'
    env.write_text("lr = '{{$MIMBENCH_TEST_LR:0.1}}'\n")
    monkeypatch.setenv('MIMBENCH_TEST_LR', '0.5')
    assert read_config(env).lr == '0.5'
    monkeypatch.setenv('MIMBENCH_TEST_LR', '0.7')
    assert read_config(env).lr == '0.7'


def test_a_module_that_custom_imports_cannot_import_is_a_user_error():
    with pytest.raises(MimbenchError, match='custom_imports: .*tests.fixtures.no_such_parts'):
        load_config(TINY, {'custom_imports.imports': ['tests.fixtures.no_such_parts']})


def test_an_unknown_new_type_is_refused_listing_the_registered_ones():
    with pytest.raises(UnknownTypeError, match="unknown masker type 'GirdMasker'; registered masker types: "
                                               ".*GridMasker.*RandomMasker"):
        load_config(TINY, {'model.masker.type': 'GirdMasker'})


# --------------------------------------------------------------------------------------- accepted keys

@pytest.mark.parametrize('options, check', [
    ({'train_dataloader.batch_size': 8}, lambda cfg: cfg.train_dataloader.batch_size == 8),
    # not in the config, but ViT takes it
    ({'model.encoder.drop_path_rate': 0.1}, lambda cfg: cfg.model.encoder.drop_path_rate == 0.1),
    ({'train_dataloader.dataset.pipeline.0.size': 12},
     lambda cfg: [t.get('size') for t in cfg.train_dataloader.dataset.pipeline] == [12, None]),
    ({'model.masker': dict(_delete_=True, type='GridMasker', cell=2)},
     lambda cfg: cfg.model.masker == dict(type='GridMasker', cell=2)),
    # custom_keys names parameters: nothing to check its keys against
    ({'optim_wrapper.paramwise_cfg.custom_keys.decoder': dict(lr_mult=0.5)},
     lambda cfg: cfg.optim_wrapper.paramwise_cfg.custom_keys.decoder == dict(lr_mult=0.5)
     and 'pos_embed' in cfg.optim_wrapper.paramwise_cfg.custom_keys),
    ({'randomness.deterministic': True}, lambda cfg: cfg.randomness == dict(seed=0, deterministic=True)),
], ids=['existing-key', 'new-argument-of-a-part', 'list-index', 'delete', 'free-form-dict', 'runner-entry'])
def test_a_valid_override_goes_in_as_mmengine_would_put_it(options, check, capsys):
    assert check(load_config(TINY, options))
    assert 'note:' not in capsys.readouterr().out        # no type swapped, nothing to say


# ------------------------------------------------------------------------------------------ type swaps

def test_swapping_the_masker_type_drops_the_old_arguments_with_one_note(capsys):
    cfg = load_config(TINY, {'model.masker.type': 'GridMasker'})
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith('note:')]
    assert notes == ['note: model.masker.type RandomMasker -> GridMasker: dropped ratio=0.75 '
                     '(GridMasker does not take it)']
    assert cfg.model.masker == dict(type='GridMasker')
    masker = MODELS.build(cfg.model).masker    # mmengine would have merged ratio in: a TypeError here
    assert isinstance(masker, GridMasker) and masker.num_masked == 12        # cell 2 on 4x4: 3 of 4 removed


def test_swapping_the_optimizer_keeps_lr_and_weight_decay_and_drops_betas(capsys):
    cfg = load_config(TINY, {'optim_wrapper.optimizer.type': 'SGD'})
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=2e-2, weight_decay=0.05)
    assert 'dropped betas=(0.9, 0.95) (SGD does not take it); kept lr, weight_decay' in capsys.readouterr().out
    with DefaultScope.overwrite_default_scope('mimbench'):
        optimizer = build_optim_wrapper(MODELS.build(cfg.model), cfg.optim_wrapper).optimizer
    assert type(optimizer).__name__ == 'SGD' and optimizer.defaults['weight_decay'] == 0.05


# ------------------------------------------------------------------------------------------ eval configs

@pytest.mark.parametrize('protocol, options, message', [
    ('linear', {'extract.thread': 1}, "the linear evaluation reads no 'thread' from extract; did you mean "
                                      "'extract.threads'"),
    ('linear', {'optimizer.momentun': 0.8}, "LARS takes no argument 'momentun'; did you mean 'optimizer.momentum'"),
    ('knn', {'epochs': 2}, "the config has no 'epochs'"),    # kNN trains nothing: no epochs to set
    ('linear', {'amp': True}, "the linear evaluation reads no such entry"),    # only fine-tuning autocasts
], ids=['extract', 'optimizer', 'not-this-protocol', 'another-protocols-option'])
def test_an_eval_override_the_evaluation_would_not_read_is_refused(protocol, options, message):
    with pytest.raises(UnknownKeyError, match=message):
        load_eval_config(protocol, None, options)


def test_an_eval_override_may_add_an_option_the_protocol_reads_with_a_default(tmp_path):
    config = tmp_path / 'linear_without_threads.py'     # the recipe alone: no threads entry
    config.write_text(f"_base_ = ['{REPO}/configs/eval/_base_/cifar10.py', "
                      f"'{REPO}/configs/eval/_base_/linear_recipe.py']\n"
                      "base_lr = 0.1\nbatch_size = 256\nepochs = 2\nwarmup_epochs = 1\n")
    assert 'threads' not in load_eval_config('linear', str(config))
    assert load_eval_config('linear', str(config), {'threads': 1}).threads == 1


def test_every_evaluation_column_of_the_ablation_scales_loads_with_its_overrides():
    from mimbench.ablation.cells import Scale
    for scale in ('micro', 'paper', str(REPO / 'tests/configs/ablation/tiny.py')):
        for spec in Scale.load(scale).cfg.evaluations.values():
            load_eval_config(spec['protocol'], str(REPO / spec['config']), dict(spec.get('options', {})))


# ------------------------------------------------------------------------------- switches beside them

def _fake_tensorboard(monkeypatch):
    # mmengine imports tensorboard only at the first logged value; the config needs only the package present
    monkeypatch.setitem(sys.modules, 'tensorboard', types.ModuleType('tensorboard'))


@pytest.mark.parametrize('options', [None, {'visualizer': dict(
    type='Visualizer', vis_backends=[dict(type='LocalVisBackend', img_save_dir='pictures')])}],
    ids=['default-visualizer', 'configs-visualizer'])
def test_tensorboard_adds_its_backend_to_the_visualizer_the_run_would_have(options, monkeypatch, tmp_path):
    _fake_tensorboard(monkeypatch)
    cfg = load_config(TINY, options)
    apply_cli(cfg, TINY, work_dir=str(tmp_path), tensorboard=True)
    local = dict(type='LocalVisBackend', **({'img_save_dir': 'pictures'} if options else {}))
    assert cfg.visualizer.vis_backends == [local, dict(type='TensorboardVisBackend')]
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name=uuid.uuid4().hex, save_dir=str(tmp_path)))
    assert [type(b).__name__ for b in visualizer._vis_backends.values()] == ['LocalVisBackend',
                                                                             'TensorboardVisBackend']


def test_tensorboard_without_the_package_is_one_error_line_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'tensorboard', None)     # import tensorboard raises ImportError
    with pytest.raises(SystemExit) as exit_:
        load_tool('train').main([TINY, '--tensorboard', '--work-dir', str(tmp_path / 'work'), '--max-iters', '1'])
    assert exit_.value.code == 'error: --tensorboard needs the tensorboard package: pip install tensorboard'
    assert not (tmp_path / 'work').exists()


def test_persistent_workers_without_workers_are_switched_off_instead_of_failing(tmp_path):
    # tiny_mae has num_workers=0; torch's DataLoader raises ValueError for persistent workers without workers
    cfg = load_config(TINY, {'train_dataloader.persistent_workers': True})
    apply_cli(cfg, TINY, work_dir=str(tmp_path))
    with DefaultScope.overwrite_default_scope('mimbench'):
        loader = Runner.build_dataloader(cfg.train_dataloader)
    assert loader.persistent_workers is False
    assert next(iter(loader))['inputs'].shape == (16, 3, 16, 16)


# ----------------------------------------------------------------------------------------------- the tools

def _error_line(tool: str, argv: list[str]) -> str:
    """What ``tools/<tool>.py argv`` tells the user when it stops: asserts it is one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_:
        load_tool(tool).main(argv)
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith('error: ') and '\n' not in message, message
    return message


@pytest.mark.parametrize('tool, argv', [
    ('train', ['{missing}.py']),
    ('train_tokenizer', ['{missing}.py']),
    ('benchmark', ['{missing}.py']),
    ('eval', ['{missing}.pth', '--protocol', 'knn']),
    ('eval', ['--scratch', '{missing}.py', '--protocol', 'knn']),
    ('eval', ['--scratch', TINY, '--protocol', 'knn', '--config-eval', '{missing}.py']),
    ('export', ['{missing}.pth', '{tmp}/out.pth']),
    ('visualize', ['{missing}.pth', '--out', '{tmp}/recon.png']),
    ('cae_alignment', ['{missing}.pth']),
    ('plot_run', ['{missing}']),
    ('ablate', ['--scale', '{missing}.py', '--axis', 'decoder_depth', '--dry-run']),
    ('decoder_tables', ['--axis', 'decoder', '--scale', '{missing}.py', '--dry-run']),
    ('mask_stats', ['--reference', 'beit={missing}.py']),
], ids=['train-config', 'train_tokenizer-config', 'benchmark-config', 'eval-checkpoint', 'eval-scratch-config',
        'eval-eval-config', 'export-checkpoint', 'visualize-checkpoint', 'cae_alignment-checkpoint',
        'plot_run-work-dir', 'ablate-scale', 'decoder_tables-scale', 'mask_stats-reference'])
def test_every_tool_names_a_missing_file_in_one_error_line(tool, argv, tmp_path):
    missing = str(tmp_path / 'missing')
    message = _error_line(tool, [a.format(missing=missing, tmp=tmp_path) for a in argv])
    assert missing in message
    assert not (tmp_path / 'out.pth').exists() and not (tmp_path / 'recon.png').exists()


@pytest.mark.parametrize('tool', ['eval', 'export', 'visualize'])
def test_a_checkpoint_without_its_config_is_one_error_line_asking_for_it(tool, tmp_path):
    ckpt = tmp_path / 'run' / 'iter_1.pth'          # no meta['cfg'], and no config file beside it
    ckpt.parent.mkdir()
    torch.save({'state_dict': {}}, ckpt)
    argv = {'eval': ['--protocol', 'knn'], 'export': [str(tmp_path / 'out.pth')],
            'visualize': ['--out', str(tmp_path / 'recon.png')]}[tool]
    message = _error_line(tool, [str(ckpt), *argv])
    assert f'cannot tell which config trained {ckpt}' in message and message.endswith('pass --config')


# --max-iters and --iters bound the work a tool would do if it let the key through
@pytest.mark.parametrize('tool, argv', [
    ('train', [TINY, '--work-dir', '{tmp}/work', '--max-iters', '1']),
    ('train_tokenizer', [str(REPO / 'configs/tokenizer_cifar10.py'), '--work-dir', '{tmp}/work', '--max-iters', '1']),
    ('benchmark', [TINY, '--iters', '1', '--warmup', '0']),
], ids=['train', 'train_tokenizer', 'benchmark'])
def test_tools_taking_cfg_options_refuse_a_misspelled_key_in_one_error_line(tool, argv, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv] + ['--cfg-options', 'train_dataloadr.batch_size=8']
    assert "did you mean 'train_dataloader.batch_size'?" in _error_line(tool, argv)
    assert not (tmp_path / 'work').exists()


def test_eval_refuses_a_misspelled_option_before_loading_anything():
    message = _error_line('eval', ['--scratch', TINY, '--protocol', 'linear', '--cfg-options', 'epohcs=2'])
    assert "did you mean 'epochs'?" in message


@pytest.mark.parametrize('argv, message', [
    (['--cfg-options', 'model.masker.ratio=1.5'],
     r'error: masker RandomMasker: ratio must be in \(0, 1\), got 1.5'),
    (['--cfg-options', 'model.masker.type=GridMasker', 'model.masker.cell=3'],
     'error: masker GridMasker: grid must be divisible by cell'),
    (['--max-iters', '0'], 'error: --max-iters must be > 0, got 0'),
], ids=['masker-ratio', 'masker-cell', 'max-iters'])
def test_train_reports_a_bad_value_in_one_error_line_naming_it(argv, message, tmp_path):
    assert re.match(message, _error_line('train', [TINY, '--work-dir', str(tmp_path / 'work'), *argv]))


def test_train_py_stops_at_a_misspelled_hook_argument_before_training_with_one_error_line(tmp_path):
    # without the check, mmengine trains to the first checkpoint and then fails to save it
    out = subprocess.run([sys.executable, 'tools/train.py', TINY, '--work-dir', str(tmp_path / 'work'),
                          '--cfg-options', 'default_hooks.checkpoint.intervl=5'],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.splitlines() == ["error: unknown config key 'default_hooks.checkpoint.intervl' in the "
                                       "overrides: CheckpointHook takes no argument 'intervl'; did you mean "
                                       "'default_hooks.checkpoint.interval'?"]
    assert not (tmp_path / 'work').exists()       # nothing ran, nothing written
