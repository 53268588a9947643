"""The ablation driver: which cells an axis expands to, how bad input is refused, that the results store
survives crashes, that a rerun continues instead of repeating, and that tables come from the store alone."""
import hashlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mimbench.ablation.axes import AXES, AblationError, get_axis
from mimbench.ablation.cells import Scale, expand, make_cell
from mimbench.ablation.estimate import estimate_cell
from mimbench.ablation.execute import expected_iterations
from mimbench.ablation.report import axis_rows, write_report
from mimbench.ablation.store import ResultStore
from mimbench.evaluation.encoder import file_sha256
from mimbench.fileio import read_json, write_json_atomic
from mimbench.machine import host_info
from tests.fixtures.records import current_metrics
from mimbench.ablation.sweep import Outcome, Progress, SweepSpec, run_sweep

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / 'tests/configs/ablation/tiny.py')
FIXTURE = REPO / 'tests/fixtures/ablation'


@pytest.fixture(scope='module')
def micro():
    return Scale.load('micro')


@pytest.fixture(scope='module')
def tiny():
    return Scale.load(TINY)


# ------------------------------------------------------------------------------------------------ expansion

@pytest.mark.parametrize('axis, values', [
    ('decoder_depth', ['1', '2', '4', '8', '12']),
    ('decoder_width', ['24', '48', '96', '144', '192']),        # the paper's 128-1024 over ViT-L's 1024, x 192
    ('mask_token', ['with', 'without']),
    ('target', ['pixel', 'norm_pixel', 'pca', 'token']),
    ('augmentation', ['none', 'fixed_crop', 'rand_crop', 'crop_jitter']),
    ('mask_sampling', ['random75', 'block50', 'block75', 'grid75']),
    ('mask_ratio', ['0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7', '0.75', '0.8', '0.9']),
    ('method', ['scratch', 'mae', 'cae', 'beit']),
    ('cae_align_weight', ['0', '0.5', '1', '2', '4']),
    ('cae_momentum', ['0', '0.9', '0.99', '0.999']),
])
def test_every_axis_expands_to_its_values_times_seeds(micro, axis, values):
    cells = expand(micro, [axis], 2)
    assert [(c.value.key, c.seed) for c in cells] == [(v, s) for v in values for s in (0, 1)]
    assert len({c.key for c in cells}) == len(cells)


def test_axis_values_change_the_config_the_way_the_paper_describes(micro):
    def cfg(axis, value):
        return expand(micro, [axis], 1, [value])[0].config()
    assert cfg('decoder_depth', '8').model.decoder.depth == 8
    assert cfg('decoder_width', '48').model.decoder.embed_dim == 48
    assert cfg('mask_token', 'with').model.mask_token_in_encoder is True
    block = cfg('mask_sampling', 'block75').model.masker
    assert (block.type, block.num_masked) == ('BlockMasker', 48) and 'ratio' not in block   # 75% of 8 x 8
    assert cfg('mask_ratio', '0.3').model.masker == dict(type='RandomMasker', ratio=0.3)
    assert cfg('target', 'pixel').model.target == dict(type='PixelTarget', normalize=False)
    assert [t['type'] for t in cfg('augmentation', 'crop_jitter').train_dataloader.dataset.pipeline] == \
        ['RandomResizedCrop', 'RandomHorizontalFlip', 'ColorJitter']
    assert cfg('cae_momentum', '0.9').model.momentum == 0.9
    assert cfg('method', 'cae').model.type == 'CAE'


def test_the_default_row_of_every_mae_axis_is_one_shared_cell(micro):
    defaults = [('decoder_depth', '2'), ('decoder_width', '96'), ('mask_token', 'without'), ('target', 'norm_pixel'),
                ('augmentation', 'rand_crop'), ('mask_sampling', 'random75'), ('mask_ratio', '0.75'),
                ('method', 'mae')]
    keys = {expand(micro, [a], 1, [v])[0].key for a, v in defaults}
    assert len(keys) == 1
    assert len(expand(micro, [a for a, _ in defaults], 1)) == sum(
        len(get_axis(a).rows(micro.context())) for a, _ in defaults) - (len(defaults) - 1)


def test_seed_and_every_config_change_make_a_new_key_but_locations_and_runtime_keys_do_not(micro):
    from mimbench.ablation.cells import cell_key
    a = expand(micro, ['decoder_depth'], 1, ['4'])[0]
    assert make_cell(micro, get_axis('decoder_depth'), a.value, 1).key != a.key

    def key_with(**options):
        cell = make_cell(micro, get_axis('decoder_depth'), a.value, 0)
        cell.options = {**cell.options, **options}
        cfg = cell.config()
        return cell_key(cfg, 0)

    # where the data is, how often it logs and saves, how many loader workers, which observing hooks: same cell
    assert key_with(**{'train_dataloader.dataset.root': '/elsewhere'}) == a.key
    assert key_with(**{'default_hooks.logger.interval': 1, 'default_hooks.checkpoint.interval': 7,
                       'train_dataloader.num_workers': 6, 'env_cfg.cudnn_benchmark': True}) == a.key
    assert key_with(custom_hooks=[dict(type='ThroughputHook'), dict(type='TrainClockHook', interval=5)]) == a.key
    # what is learned: a new cell
    assert key_with(**{'optim_wrapper.optimizer.lr': 1e-3}) != a.key
    assert key_with(**{'train_dataloader.batch_size': 128}) != a.key
    assert key_with(custom_hooks=[dict(type='ThroughputHook'), dict(type='MomentumTeacherHook')]) != a.key
    assert key_with(**{'default_hooks.param_scheduler': None}) != a.key      # the lr would stay constant
    assert key_with(**{'default_hooks.ema': dict(type='EMAHook', momentum=1e-4)}) != a.key
    assert key_with(custom_hooks=None) == key_with(custom_hooks=[])


def test_a_behaviour_version_of_any_part_a_cell_runs_makes_new_keys_and_version_1_keeps_todays(micro,
                                                                                               monkeypatch):
    from mimbench.ablation.cells import Scale
    from mimbench.data.device import DeviceBatchLoader
    from mimbench.data.sampler import ResumableSampler
    from mimbench.engine.optim import AutocastOptimWrapper
    bf16 = Scale.load('micro_bf16')
    value = get_axis('decoder_depth').values(micro.context(), ['4'])[0]
    fp32_key, bf16_key = (make_cell(scale, get_axis('decoder_depth'), value, 0).key for scale in (micro, bf16))
    # the micro default cell as stored in docs/results/ablation/micro: today's parts keep today's keys
    default = get_axis('method').values(micro.context(), ['mae'])[0]
    assert make_cell(micro, get_axis('method'), default, 0).key == 'a36cdf0f771ae07e'
    # a part named in the config (the sampler), and a part a run switch puts in place (bf16 autocast)
    monkeypatch.setattr(ResumableSampler, 'identity_version', 2, raising=False)
    assert make_cell(micro, get_axis('decoder_depth'), value, 0).key != fp32_key
    monkeypatch.undo()
    # a name mmengine registers too is ours in a config (CheckpointHook; it only watches, so it is in no key)
    from mimbench.ablation.cells import identity_version
    from mimbench.engine.checkpoint import AtomicCheckpointHook
    monkeypatch.setattr(AtomicCheckpointHook, 'identity_version', 2, raising=False)
    assert identity_version('CheckpointHook') == 2
    monkeypatch.undo()
    monkeypatch.setattr(AutocastOptimWrapper, 'identity_version', 2, raising=False)
    monkeypatch.setattr(DeviceBatchLoader, 'identity_version', 2, raising=False)
    assert make_cell(micro, get_axis('decoder_depth'), value, 0).key == fp32_key     # fp32 runs neither
    assert make_cell(bf16, get_axis('decoder_depth'), value, 0).key != bf16_key


def test_a_cell_run_on_more_processes_is_another_cell(micro, tmp_path):
    # the configured batch is per process, and the lr scales with the whole batch
    path = tmp_path / 'two.py'
    path.write_text("_base_ = ['micro.py']\nscale = 'micro'\ngpus_per_cell = 2\n".replace(
        'micro.py', str(REPO / 'configs/ablation/micro.py')))
    value = get_axis('decoder_depth').values(micro.context(), ['4'])[0]
    keys = {make_cell(scale, get_axis('decoder_depth'), value, 0).key for scale in (micro, Scale.load(str(path)))}
    assert len(keys) == 2


def pinned_scale(tmp_path, content: bytes, **files):
    """The tiny scale with its tokenizer (at tmp_path/tok/tokenizer.pth) pinned to ``content``'s hash."""
    tokenizer = tmp_path / 'tok' / 'tokenizer.pth'
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = tmp_path / 'pinned.py'
    path.write_text(f"_base_ = [{TINY!r}]\nscale = 'pinned'\nartifacts = {{{str(tokenizer)!r}: {digest!r}}}\n")
    return Scale.load(str(path)), tokenizer, digest


def token_value(tokenizer):
    from mimbench.ablation.axes import AxisValue
    return AxisValue('token', 'token', {'model.target': dict(_delete_=True, type='TokenTarget',
                                                             checkpoint=str(tokenizer))})


def test_a_pinned_weight_file_gives_its_cells_one_key_whether_or_not_it_is_here(tmp_path, tiny):
    """A fresh clone has no work_dirs/: a cell that reads a pinned tokenizer has the key its stored record has."""
    content = b'the tokenizer every token cell of this scale reads'
    scale, tokenizer, digest = pinned_scale(tmp_path, content)
    absent = make_cell(scale, get_axis('target'), token_value(tokenizer), 0)
    tokenizer.parent.mkdir()
    tokenizer.write_bytes(content)
    present = make_cell(scale, get_axis('target'), token_value(tokenizer), 0)
    assert absent.key == present.key
    # the same key an unpinned scale gives by reading the file: pinning moved no stored cell
    assert make_cell(tiny, get_axis('target'), token_value(tokenizer), 0).key == present.key
    tokenizer.write_bytes(b'a retrained tokenizer')                  # unpinned: another file, another cell
    assert make_cell(tiny, get_axis('target'), token_value(tokenizer), 0).key != present.key


def test_before_a_cell_runs_the_pinned_file_is_restored_from_a_store_and_another_file_is_refused(tmp_path):
    from mimbench.ablation.cells import ensure_artifacts
    content = b'the pinned tokenizer'
    scale, tokenizer, digest = pinned_scale(tmp_path, content)
    results = tmp_path / 'results' / 'ablation'
    own, sibling = ResultStore(results / 'pinned'), ResultStore(results / 'micro')
    with pytest.raises(AblationError, match=f'no results store keeps the file .* pins .files/{digest}'):
        ensure_artifacts(scale, own, log=lambda _: None)
    (sibling.root / 'files').mkdir(parents=True)
    (sibling.root / 'files' / f'{digest}.bin').write_bytes(b'not the pinned content')   # a copy that lies: skipped
    (sibling.root / 'files' / f'{digest}.pth').write_bytes(content)   # kept by another scale's store
    lines = []
    assert ensure_artifacts(scale, own, log=lines.append) == [str(tokenizer)]
    assert tokenizer.read_bytes() == content and 'restored' in lines[0]
    assert ensure_artifacts(scale, own, log=lines.append) == []        # here, and right: nothing to do
    tokenizer.write_bytes(b'a retrained tokenizer')
    with pytest.raises(AblationError, match=f'holds [0-9a-f]{{16}}, but scale .pinned. pins {digest}'):
        ensure_artifacts(scale, own, log=lambda _: None)
    assert tokenizer.read_bytes() == b'a retrained tokenizer'          # refused, never replaced


def test_a_dry_run_builds_a_cell_from_the_stores_copy_of_a_missing_pinned_file_and_writes_nothing(micro, tmp_path,
                                                                                                  monkeypatch):
    from mimbench.ablation import cells
    tokenizer_path = next(iter(micro.artifacts))                           # work_dirs/tokenizer_cifar10/...
    cell = expand(micro, ['method'], 1, ['beit'])[0]
    monkeypatch.setattr(cells, 'repo_path', lambda p: str(tmp_path / p))     # a fresh clone: nothing here
    readable = cells.readable_copy(cell.config(), micro)
    kept = REPO / 'docs/results/ablation/micro/files' / f'{micro.artifacts[tokenizer_path]}.pth'
    assert readable.model.target.checkpoint == str(kept)
    assert cell.config().model.target.checkpoint == tokenizer_path        # the cell's own config is untouched
    assert not any(tmp_path.iterdir())


def test_the_micro_scales_pin_the_tokenizer_and_basis_their_stored_cells_read(micro):
    """The 10- and 20-epoch scales must read the very files the 5-epoch cells did."""
    kept = {}
    for record in ResultStore(REPO / 'docs/results/ablation/micro').records().values():
        for path, copy in (record.get('weight_files') or {}).items():
            kept.setdefault(path, set()).add(Path(copy).stem)
    assert {path: {digest} for path, digest in micro.artifacts.items()} == kept
    for name in ('micro_bf16', 'micro_bf16_10ep', 'micro_bf16_20ep'):
        assert Scale.load(name).artifacts == micro.artifacts
    for digest in micro.artifacts.values():
        assert (REPO / 'docs/results/ablation/micro/files' / f'{digest}.pth').is_file()


def test_a_finished_cell_whose_weight_file_is_missing_is_estimated_from_its_record(micro, tmp_path):
    """--dry-run (and every sweep, which estimates first) must not need a tokenizer for cells already run."""
    from mimbench.ablation.axes import AxisValue
    value = AxisValue('token', 'token', {'model.target': dict(_delete_=True, type='TokenTarget',
                                                             checkpoint=str(tmp_path / 'absent.pth'))})
    cell = make_cell(micro, get_axis('target'), value, 0)
    with pytest.raises(AblationError, match='target=token seed 0 cannot be built.*tokenizer checkpoint'):
        estimate_cell(cell, micro, ['knn'], gflops_per_s=100.0)       # unrun: it must build, and cannot
    record = dict(key=cell.key, flops_gflops_per_img=dict(train=1.5))
    est = estimate_cell(cell, micro, ['knn'], gflops_per_s=100.0, record=record)
    pixel = estimate_cell(expand(micro, ['target'], 1, ['pixel'])[0], micro, ['knn'], gflops_per_s=100.0)
    assert est.train_gflops == 1.5
    assert est.pretrain_gflop == pytest.approx(1.5 * pixel.pretrain_gflop / pixel.train_gflops)
    assert est.encoder_gflops == pytest.approx(pixel.encoder_gflops)   # extraction runs the same encoder
    assert est.eval_s == pytest.approx(pixel.eval_s)


def test_the_bf16_micro_scale_runs_the_same_configs_as_other_cells_with_their_own_tables(micro):
    """Precision is part of a cell's identity: bf16 cells never stand in for fp32 ones, nor share their tables."""
    from mimbench.ablation.report import _file_stem
    bf16 = Scale.load('micro_bf16')
    fp32_cell, bf16_cell = (expand(s, ['method'], 1, ['mae'])[0] for s in (micro, bf16))
    assert fp32_cell.config().pretty_text == bf16_cell.config().pretty_text     # same model, data and recipe
    assert fp32_cell.key != bf16_cell.key and bf16.cfg.amp and not micro.cfg.amp
    assert _file_stem(bf16, 'method') == 'method_micro_bf16' and _file_stem(micro, 'method') == 'method'


def test_numeric_axes_take_new_values_and_categorical_axes_list_theirs(micro):
    assert [c.value.key for c in expand(micro, ['decoder_depth'], 1, ['3'])] == ['3']
    assert expand(micro, ['mask_ratio'], 1, ['0.65'])[0].value.paper.lin is None
    with pytest.raises(AblationError, match="no value 'blocky'.*random75, block50, block75, grid75"):
        expand(micro, ['mask_sampling'], 1, ['blocky'])
    with pytest.raises(AblationError, match="takes int values, got 'deep'"):
        expand(micro, ['decoder_depth'], 1, ['deep'])
    assert expand(micro, ['mask_ratio'], 1, ['75'])[0].key == expand(micro, ['mask_ratio'], 1, ['0.75'])[0].key
    with pytest.raises(AblationError, match=r"outside \[0.01, 99\]"):
        expand(micro, ['mask_ratio'], 1, ['150'])
    with pytest.raises(AblationError, match="unknown axis 'decoder'.*decoder_depth, decoder_width"):
        get_axis('decoder')


def test_a_value_that_cannot_build_fails_at_dry_run_time(tiny):
    cell = expand(tiny, ['decoder_width'], 1, ['5'])[0]     # 5 channels over the decoder's 2 heads
    with pytest.raises(AblationError, match=r'decoder_width=5 seed 0 cannot be built'):
        estimate_cell(cell, tiny, ['knn'], gflops_per_s=100.0)


def test_the_cli_names_a_bad_axis_and_lists_the_valid_ones():
    out = subprocess.run([sys.executable, 'tools/ablate.py', '--axis', 'mask_shape', '--dry-run'], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "unknown axis 'mask_shape'" in out.stderr and 'mask_sampling' in out.stderr and 'speed' in out.stderr


def test_dry_run_lists_cells_with_estimates_and_trains_nothing(tmp_path):
    from mimbench.machine import host_info
    store = ResultStore(tmp_path / 'ablation' / 'tiny')
    for day in ('2026-01-01', '2026-01-02', '2026-01-03'):     # timed cells of this host: a second estimate
        store.put(_timed_record(day, 4.0, host=host_info()))
    kept = tmp_path / 'made_elsewhere.pth'           # a tokenizer a stored cell read, missing on this machine
    kept.write_bytes(b'tokenizer')
    store.put(dict(_timed_record('2025-12-31', 4.0, host='elsewhere'), key='token-cell',
                   weight_files={str(tmp_path / 'tokenizer.pth'): store.keep_file(kept)}))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    out = subprocess.run([sys.executable, 'tools/ablate.py', '--scale', TINY, '--axis', 'decoder_depth',
                          '--values', '1', '2', '--seeds', '2', '--dry-run', '--results', str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'decoder_depth=1 seed 1' in out.stdout and 'to run or evaluate: 4 cells' in out.stdout
    assert 'the 3 latest cells of this host pretrained at a median 20 GFLOP/s' in out.stdout
    # nothing trained, nothing written: not even the stored tokenizer is put back (a sweep does that)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before


def test_a_cell_that_has_pretrained_counts_only_its_missing_evaluations_and_a_study_counts_each_cell_once(
        tiny, tmp_path, monkeypatch, capsys):
    from mimbench.cli.ablate import dry_run
    monkeypatch.setattr('mimbench.ablation.estimate.device_gflops', lambda scale: (1.0, 'a fixed rate'))
    store, work = ResultStore(tmp_path / 'store'), tmp_path / 'work'
    done, fresh, orphan = expand(tiny, ['decoder_depth'], 1, ['1', '2', '4'])
    for cell in (done, orphan):          # pretrained and evaluated by knn; the orphan's work dir is gone
        store.put(dict(key=cell.key, scale='tiny', axis='decoder_depth', value=cell.value.key, seed=0,
                       metrics=current_metrics(tiny, {'knn': {'accuracy': 50.0}})))
    (work / done.key).mkdir(parents=True)
    (work / done.key / 'pretrain.json').write_text('{}')
    todo = {}
    dry_run(tiny, [done, fresh, orphan], ['knn', 'lin'], store, listing=True, todo_out=todo, work_root=work)
    assert todo == {done.key: pytest.approx(estimate_cell(done, tiny, ['lin'], 1.0).eval_s),
                    fresh.key: pytest.approx(estimate_cell(fresh, tiny, ['knn', 'lin'], 1.0).total_s)}
    out = capsys.readouterr().out
    assert 'to evaluate' in out and 'to run or evaluate: 2 cells' in out
    assert f'1 stored cells lack evaluations but their work dirs under {work} are gone' in out
    # a later step that needs less of the same cells: each cell keeps its largest estimate, counted once
    before = dict(todo)
    dry_run(tiny, [done, fresh], ['knn'], store, listing=False, todo_out=todo, work_root=work)
    assert todo == before


def test_a_dry_run_charges_an_interrupted_cell_the_iterations_after_its_newest_checkpoint_and_names_its_runner(
        tiny, tmp_path, monkeypatch, capsys):
    from mimbench.cli.ablate import dry_run
    from mimbench.lockfile import hold_lock
    monkeypatch.setattr('mimbench.ablation.estimate.device_gflops', lambda scale: (1.0, 'a fixed rate'))
    store, work = ResultStore(tmp_path / 'store'), tmp_path / 'work'
    (cell,) = expand(tiny, ['decoder_depth'], 1, ['1'])
    full = estimate_cell(cell, tiny, ['knn'], 1.0)
    assert expected_iterations(cell, tiny) == 8
    (work / cell.key).mkdir(parents=True)
    for it in (2, 6):    # checkpoints of a killed run: it resumes at the newest, 6 of 8 iterations done
        (work / cell.key / f'iter_{it}.pth').write_bytes(b'')
    todo = {}
    dry_run(tiny, [cell], ['knn'], store, listing=True, todo_out=todo, work_root=work)
    assert todo == {cell.key: pytest.approx(full.pretrain_s * 2 / 8 + full.eval_s)}
    out = capsys.readouterr().out
    assert 'to run from iteration 6/8' in out and 'running now' not in out
    me = f'{socket.gethostname()}:{os.getpid()}'
    with hold_lock(work / cell.key / '.lock'):     # a sweep in another terminal holds the cell
        dry_run(tiny, [cell], ['knn'], store, listing=True, work_root=work)
    assert f'to run from iteration 6/8, running now ({me})' in capsys.readouterr().out
    with hold_lock(work / cell.key / '.train.lock'):     # tools/train.py --resume, run by hand
        dry_run(tiny, [cell], ['knn'], store, listing=True, work_root=work)
    assert f'running now ({me})' in capsys.readouterr().out
    # the pointer names the checkpoint a resume loads, though a newer file lies beside it (saved, not yet named)
    (work / cell.key / 'last_checkpoint').write_text(str(work / cell.key / 'iter_2.pth'))
    dry_run(tiny, [cell], ['knn'], store, listing=True, work_root=work)
    assert 'to run from iteration 2/8' in capsys.readouterr().out
    # a checkpoint past the run's iterations came from another dataset: not charged as almost done
    (work / cell.key / 'last_checkpoint').unlink()
    (work / cell.key / 'iter_9.pth').write_bytes(b'')
    todo = {}
    dry_run(tiny, [cell], ['knn'], store, listing=True, todo_out=todo, work_root=work)
    assert "its checkpoint (iteration 9) is past the run's 8: the sweep will refuse it" in capsys.readouterr().out
    assert todo == {cell.key: pytest.approx(full.total_s)}


# ------------------------------------------------------------------------------------------------ the store

def _writer(path, stop_after):
    # rewrite one record over and over with a large payload, so a kill lands mid-write sooner or later
    i = 0
    while i < stop_after:
        write_json_atomic(path, {'key': 'k', 'i': i, 'payload': 'x' * 200_000})
        i += 1


def test_a_cell_resumed_on_newer_code_lists_every_code_version_that_trained_it(tmp_path):
    from mimbench.ablation.execute import note_code_version
    assert note_code_version(tmp_path, 'abc123') == ['abc123']
    assert note_code_version(tmp_path, 'abc123') == ['abc123']            # a resume on the same code
    assert note_code_version(tmp_path, 'def456-dirty') == ['abc123', 'def456-dirty']


def test_the_code_version_is_dirty_for_changed_code_but_not_for_changed_results(tmp_path):
    from mimbench.ablation.store import code_version
    git = ['git', '-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'commit.gpgsign=false']
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'table.md').write_text('a\n')
    (tmp_path / 'model.py').write_text('x = 1\n')
    subprocess.run([*git, 'add', '.'], cwd=tmp_path, check=True)
    subprocess.run([*git, 'commit', '-q', '-m', 'c'], cwd=tmp_path, check=True)
    clean = code_version(tmp_path)
    assert clean and not clean.endswith('-dirty') and clean != 'unknown'
    (tmp_path / 'docs' / 'table.md').write_text('b\n')         # a sweep rewrote a table
    assert code_version(tmp_path) == clean
    (tmp_path / 'model.py').write_text('x = 2\n')
    assert code_version(tmp_path) == clean + '-dirty'


def test_a_record_killed_mid_write_leaves_the_old_record_whole(tmp_path):
    path = tmp_path / 'k.json'
    write_json_atomic(path, {'key': 'k', 'i': -1})
    ctx = multiprocessing.get_context('fork')
    for delay in (0.01, 0.03, 0.07, 0.11):
        proc = ctx.Process(target=_writer, args=(path, 10 ** 9))
        proc.start()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        record = json.loads(path.read_text())       # never torn: parses, and is a whole record
        assert record['key'] == 'k' and (record['i'] == -1 or len(record['payload']) == 200_000)
    store = ResultStore(tmp_path)
    assert list(store.records()) == ['k']           # temporary files of killed writes are not records


def test_a_failed_write_keeps_the_previous_record_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.put({'key': 'a', 'metrics': {'knn': {'accuracy': 50.0}}})

    def crash(*args, **kwargs):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError):
        store.put({'key': 'a', 'metrics': {}})
    assert store.get('a')['metrics'] == {'knn': {'accuracy': 50.0}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.json']


# ------------------------------------------------------------------------------------------------ sweeps

def _spec(tmp_path, evaluations=('knn',)):
    return SweepSpec(scale=TINY, store=str(tmp_path / 'store'), work_root=str(tmp_path / 'work'),
                     evaluations=list(evaluations))


def test_a_sweep_writes_one_record_per_cell_and_a_rerun_skips_finished_cells(tiny, tmp_path, monkeypatch):
    cells = expand(tiny, ['decoder_depth'], 1, ['1', '2'])
    lines = []
    records = run_sweep(cells, _spec(tmp_path), log=lines.append)
    assert [r['key'] for r in records] == [c.key for c in cells]
    record = records[0]
    assert record['pretrain']['iters'] == 8 and record['pretrain']['cpu_seconds'] > 0
    assert 0 <= record['metrics']['knn']['accuracy'] <= 100
    assert record['flops_gflops_per_img']['encoder'] > 0 and record['code_version']
    assert record['pretrain']['code_versions'] == [record['code_version']]   # one segment, same code
    assert record['pretrain']['hosts'] == [dict(record['host'], from_iter=0)]  # one machine
    assert any(line.startswith('[2/2] decoder_depth=2 seed 0') for line in lines)

    import mimbench.ablation.execute as execute

    def must_not_run(*args, **kwargs):
        raise AssertionError('a finished cell was run again')
    monkeypatch.setattr(execute, 'pretrain', must_not_run)
    monkeypatch.setattr(execute, 'evaluate_cell', must_not_run)
    lines.clear()
    assert run_sweep(cells, _spec(tmp_path), log=lines.append) == records
    assert lines[0].startswith('2 cells: 2 already in')


def test_a_sweep_passes_on_its_evaluations_progress_after_the_cell_and_column(tiny, tmp_path, monkeypatch):
    """An evaluation can run for hours (fine-tuning a 20-epoch cell here: 3 hours): the sweep's output shows its
    epochs as it does pretraining's iterations (rate-limited: the next test)."""
    import mimbench.ablation.execute as execute
    monkeypatch.setattr(execute, 'EVALUATION_PROGRESS_S', 0.0)
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    lines = []
    run_sweep(cells, _spec(tmp_path, evaluations=('lin',)), log=lines.append)
    epochs = [line for line in lines if line.startswith('  decoder_depth=1 seed 0: lin epoch ')]
    assert epochs and epochs[-1].startswith('  decoder_depth=1 seed 0: lin epoch 3/3  loss ')


def test_an_evaluations_progress_lines_are_passed_on_at_most_once_a_minute():
    import mimbench.ablation.execute as execute
    clock = iter([0.0, 30.0, 59.9, 60.0, 200.0])
    lines = []
    progress = execute.evaluation_progress(lines.append, 'mae seed 0: ft', clock=lambda: next(clock))
    for i in range(5):
        progress(f'  iter {i}')
    assert lines == ['  mae seed 0: ft iter 0', '  mae seed 0: ft iter 3', '  mae seed 0: ft iter 4']


def test_a_hand_made_evaluation_of_a_cell_whose_work_dir_is_gone_is_adopted_only_if_it_is_that_cells_column(
        tmp_path, capsys):
    """The ft column of the 20-epoch MAE cell was run by hand (tools/eval.py, calibrating the recipe) on a work
    dir since lost: --adopt stores it, and refuses a record of another cell, seed, checkpoint or recipe."""
    from mimbench.ablation.execute import eval_config
    from mimbench.cli.ablate import main
    scale = Scale.load('micro_bf16_20ep')
    store = ResultStore(tmp_path / 'ablation' / scale.name)
    stored = read_json(REPO / 'docs/results/ablation/micro_bf16_20ep/6e57483ec4f8b235.json')    # the real cell,
    stored['metrics'].pop('ft', None)                                                       # as it was
    store.put(stored)
    calibration = read_json(REPO / 'docs/results/finetune_calibration/mae_20ep_seed0_recipe_light_10ep.json')

    def main_error(argv):
        try:
            main(argv)
        except SystemExit as stop:
            return str(stop.code)
        return None

    def adopt(name, **changes):
        write_json_atomic(tmp_path / name, dict(calibration, **changes))
        return main_error(['--scale', scale.name, '--evaluations', 'ft', '--adopt', str(tmp_path / name),
                           '--results', str(tmp_path)])
    assert 'seed 1 where the cell has 0' in adopt('seed.json', seed=1)
    assert 'where the cell\'s pretraining ended at 6e57483ec4f8b235/iter_3900.pth' in adopt(
        'early.json', checkpoint='/x/6e57483ec4f8b235/iter_1000.pth')
    assert 'epochs 3 where the recipe has 10' in adopt('short.json', hparams=dict(calibration['hparams'], epochs=3))
    assert "no cell of scale 'micro_bf16_20ep'" in adopt('other.json', config='0000000000000000')
    assert 'read 5,000 train images' in adopt('subset.json', data=dict(train=5000, test=10000))
    assert 'no data sizes' in adopt('nodata.json', data=None)
    assert 'fine-tuning columns only' in main_error(['--scale', scale.name, '--evaluations', 'lin', '--adopt',
                                                     str(tmp_path / 'seed.json'), '--results', str(tmp_path)])
    assert store.get('6e57483ec4f8b235') == stored        # nothing stored by a refusal
    assert adopt('ft.json') is None
    ft = store.get('6e57483ec4f8b235')['metrics']['ft']
    assert ft['accuracy'] == 69.32 and ft['eval_hash'] == eval_config(scale, 'ft')[2]
    assert ft['adopted']['record'].endswith('ft.json') and ft['adopted']['checkpoint_sha256'].startswith('2cda7f13')
    assert {k: v for k, v in store.get('6e57483ec4f8b235')['metrics'].items() if k != 'ft'} == stored['metrics']
    table = (tmp_path / 'method_micro_bf16_20ep.md').read_text()
    assert next(line for line in table.splitlines() if line.startswith('| MAE |')).split(' | ')[2] == '69.32'
    assert 'one result a column' in adopt('again.json')


def test_merging_another_checkouts_results_adds_new_cells_and_new_evaluations_but_never_mixes_two_runs(tmp_path):
    """Cells run in a second checkout (a background worker's clone) come home through --merge: a cell evaluated
    further there (its fine-tuning, say) must come with it, which copying only files we lack would miss."""
    run = dict(checkpoint='w/iter_3900.pth', iters=3900, cpu_seconds=7000.0)
    lin = {'accuracy': 50.0, 'eval_hash': 'a'}

    def record(key, pretrain=run, **metrics):
        return dict(key=key, scale='s', pretrain=pretrain, metrics=metrics)
    ours, theirs = (ResultStore(tmp_path / side / 'ablation' / 's') for side in ('ours', 'theirs'))
    (theirs.root / 'files').mkdir(parents=True)
    (theirs.root / 'files' / 'abc.pth').write_bytes(b'tokenizer')
    ours.put(record('same', lin=lin))
    theirs.put(record('same', lin=lin))
    ours.put(record('ft-there', lin=lin))
    theirs.put(record('ft-there', lin=lin, ft={'accuracy': 80.0, 'eval_hash': 'f'}))
    ours.put(record('both-added', lin=lin, knn={'accuracy': 30.0, 'eval_hash': 'k'}))
    theirs.put(record('both-added', lin=lin, att={'accuracy': 60.0, 'eval_hash': 't'}))
    ours.put(record('more-here', lin=lin, knn={'accuracy': 30.0, 'eval_hash': 'k'}))
    theirs.put(record('more-here', lin=lin))
    ours.put(record('rerun', lin=lin))
    theirs.put(record('rerun', pretrain=dict(run, cpu_seconds=6500.0), lin=dict(lin, accuracy=47.0)))
    ours.put(record('other-result', lin=lin))
    theirs.put(record('other-result', lin=dict(lin, accuracy=51.0)))
    theirs.put(dict(record('new', lin=lin), weight_files={'work_dirs/tok.pth': 'files/abc.pth'}))
    before = {k: ours.get(k) for k in ('rerun', 'other-result', 'more-here')}

    out = subprocess.run([sys.executable, 'tools/ablate.py', '--merge', str(tmp_path / 'theirs'), '--results',
                          str(tmp_path / 'ours')], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert 's: 1 new, 2 extended, 1 same, 1 kept, 2 conflict' in out.stdout
    assert out.returncode != 0 and out.stderr.strip().startswith('error: left as they are here: ')
    assert 's/rerun: two pretraining runs' in out.stderr and 's/other-result: column lin holds two' in out.stderr
    assert set(ours.get('ft-there')['metrics']) == {'lin', 'ft'}
    assert set(ours.get('both-added')['metrics']) == {'lin', 'knn', 'att'}
    assert {k: ours.get(k) for k in before} == before            # conflicts and richer records left alone
    assert ours.get('new')['metrics'] == {'lin': lin}
    assert (ours.root / 'files' / 'abc.pth').read_bytes() == b'tokenizer'   # the weight file the new cell read


def test_a_merge_tells_one_run_from_two_by_what_it_measured_not_where_it_lay_or_which_code_wrote_it(tmp_path):
    from mimbench.ablation.store import merge_record, merge_stores
    run = dict(checkpoint='work_dirs/c/iter_3900.pth', iters=3900, cpu_seconds=7000.0)
    lin = {'accuracy': 50.0, 'eval_hash': 'new', 'code_version': 'aaa'}
    ours = dict(key='k', pretrain=dict(run, checkpoint='/work/main/work_dirs/c/iter_3900.pth'), metrics={'lin': lin},
                finished='T2', driver_seconds=150.0, extract_seconds=7.0)
    # the clone wrote the checkpoint path relative to itself and its lin under other code: one run, one result
    theirs = dict(ours, pretrain=run, metrics={'lin': dict(lin, code_version='bbb'), 'att': {'accuracy': 60.0}},
                  finished='T3', driver_seconds=400.0, extract_seconds=9.0)
    outcome, merged, _ = merge_record(ours, theirs)
    assert outcome == 'extended' and set(merged['metrics']) == {'lin', 'att'}
    assert merged['pretrain'] == ours['pretrain'] and merged['finished'] == 'T3'
    assert (merged['driver_seconds'], merged['extract_seconds']) == (400.0, 9.0)
    # a column re-evaluated under the present recipe replaces the stale one, from either side
    stale = dict(ours, metrics={'lin': dict(lin, accuracy=48.0, eval_hash='old')})
    assert merge_record(stale, ours, {'lin': {'new'}})[0:2] == ('extended', dict(ours))
    assert merge_record(ours, stale, {'lin': {'new'}})[0] == 'kept'
    assert merge_record(ours, stale)[0] == 'conflict'         # which recipe is current is not known
    # both stale under two old recipes: ours stays (a sweep re-evaluates it), and the rest still comes
    older = dict(stale, metrics={'lin': dict(lin, accuracy=47.0, eval_hash='older'), 'ft': {'accuracy': 80.0}},
                 weight_files={})
    outcome, merged, _ = merge_record(stale, older, {'lin': {'new'}})
    assert outcome == 'extended' and merged['metrics'] == {'lin': stale['metrics']['lin'], 'ft': {'accuracy': 80.0}}
    assert 'weight_files' in merge_record(older, dict(stale, finished='T9', metrics={'att': {}}))[1]  # none dropped
    # a record whose kept weight file neither store holds is not written; one that is not JSON is named
    mine, other = ResultStore(tmp_path / 'ours'), ResultStore(tmp_path / 'theirs')
    other.put(dict(key='tok', pretrain=None, metrics={}, weight_files={'work_dirs/t.pth': 'files/gone.pth'}))
    other.root.joinpath('torn.json').write_text('{"key": "to')
    other.root.joinpath('empty.json').write_text('{}')
    done = merge_stores(other, mine)
    assert done['missing file'] == ['tok: its weight file files/gone.pth is in neither store']
    assert done['unreadable'][0] == 'empty: not a record of this cell' and not mine.records()
    assert done['unreadable'][1].startswith('torn: not a JSON record')
    out = subprocess.run([sys.executable, 'tools/ablate.py', '--merge', str(tmp_path), '--store', 'x'], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and out.stderr.strip() == ('error: --merge takes only --results (where the records '
                                                          'go): leave out --axis, --values, --study, --scale, '
                                                          '--store, --report, --dry-run and --adopt')


def test_the_store_keeps_the_tokenizer_a_cell_read_and_restores_it_where_it_is_missing(tiny, tmp_path):
    """work_dirs/ is not committed: without the kept copy, a fresh clone could never add a seed to a token
    cell with the tokenizer its first seed used."""
    from mimbench.ablation.axes import AxisValue
    from mimbench.ablation.cells import restore_weight_files
    from tests.fixtures.tokenizers import make_tokenizer_file
    tokenizer = tmp_path / 'tok' / 'tokenizer.pth'
    tokenizer.parent.mkdir()
    make_tokenizer_file(tokenizer)
    value = AxisValue('token', 'token', {'model.target': dict(_delete_=True, type='TokenTarget',
                                                             checkpoint=str(tokenizer))})
    cell = make_cell(tiny, get_axis('target'), value, 0)
    record = run_sweep([cell], _spec(tmp_path), log=lambda _: None)[0]
    store = ResultStore(tmp_path / 'store')
    kept = store.root / record['weight_files'][str(tokenizer)]
    assert kept.read_bytes() == tokenizer.read_bytes()
    assert list(store.records()) == [cell.key]                  # the copy is not mistaken for a record

    assert restore_weight_files(store, log=lambda _: None) == []  # present: left alone
    original = tokenizer.read_bytes()
    tokenizer.unlink()
    lines = []
    assert restore_weight_files(store, log=lines.append) == [str(tokenizer)]
    assert tokenizer.read_bytes() == original and 'restored' in lines[0]
    assert make_cell(tiny, get_axis('target'), value, 0).key == cell.key   # the same cell again, by content

    tokenizer.unlink()                                           # (a tokenizer file is never overwritten)
    make_tokenizer_file(tokenizer, vocab_size=8)                 # a second tokenizer, kept by a second record
    store.put(dict(record, key='other', weight_files={str(tokenizer): store.keep_file(tokenizer)}))
    tokenizer.unlink()
    lines.clear()
    assert restore_weight_files(store, log=lines.append) == []   # two versions: the user chooses
    assert not tokenizer.exists() and 'keeps 2 versions' in lines[0]


def test_a_new_evaluation_is_added_to_finished_cells_without_pretraining_again(tiny, tmp_path, monkeypatch):
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    first = run_sweep(cells, _spec(tmp_path), log=lambda _: None)[0]
    work = tmp_path / 'work' / cells[0].key
    finished = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in work.iterdir()
                if p.suffix in ('.pth', '.json') or p.name == 'last_checkpoint'}
    import mimbench.ablation.execute as execute
    launched = []
    real_popen = execute.subprocess.Popen
    monkeypatch.setattr(execute.subprocess, 'Popen', lambda *a, **k: launched.append(a) or real_popen(*a, **k))
    monkeypatch.setattr(execute, 'code_version', lambda: 'newer')
    record = run_sweep(cells, _spec(tmp_path, ('knn', 'lin')), log=lambda _: None)[0]
    assert set(record['metrics']) == {'knn', 'lin'}
    assert record['metrics']['knn'] == first['metrics']['knn']      # the finished column is kept, not redone
    # each column says which code computed it
    assert record['metrics']['lin']['code_version'] == 'newer' != record['metrics']['knn']['code_version']
    assert not [cmd for cmd in launched if 'mimbench.cli.train' in cmd[0]]   # no training run
    assert {name: (work / name).stat().st_mtime_ns for name in finished} == \
        {name: mtime for name, (mtime, _) in finished.items()}        # weights and summaries untouched


def test_an_evaluation_finished_before_a_kill_is_reused_only_for_the_same_weights(tiny, tmp_path):
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    first = run_sweep(cells, _spec(tmp_path), log=lambda _: None)[0]
    store = ResultStore(tmp_path / 'store')
    work = tmp_path / 'work' / cells[0].key
    (evaluation,) = (work / 'eval').glob('knn-*.json')
    written = evaluation.stat().st_mtime_ns
    store.path(cells[0].key).unlink()          # killed after its evaluation, before its record was written
    again = run_sweep(cells, _spec(tmp_path), log=lambda _: None)[0]
    assert again['metrics']['knn'] == first['metrics']['knn'] and evaluation.stat().st_mtime_ns == written

    checkpoint = Path(first['pretrain']['checkpoint']).resolve()
    ckpt = torch.load(checkpoint, weights_only=False)
    ckpt['state_dict'] = {k: v * 0.5 if v.is_floating_point() else v for k, v in ckpt['state_dict'].items()}
    torch.save(ckpt, checkpoint)               # other weights under the same path: retrained in place
    store.path(cells[0].key).unlink()
    run_sweep(cells, _spec(tmp_path), log=lambda _: None)
    assert evaluation.stat().st_mtime_ns != written                 # evaluated again, of the new weights
    assert json.loads(evaluation.read_text())['checkpoint_sha256'] == file_sha256(checkpoint)


def test_a_pretraining_that_leaves_no_checkpoint_fails_its_cell_rather_than_evaluate_a_random_init(
        tiny, tmp_path, monkeypatch):
    import mimbench.ablation.execute as execute
    monkeypatch.setattr(execute, 'train_command', lambda *args: [sys.executable, '-c', 'pass'])   # exits 0
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    lines = []
    assert run_sweep(cells, _spec(tmp_path), log=lines.append) == []
    assert any('FAILED' in line and 'left no checkpoint' in line for line in lines), lines
    assert not list((tmp_path / 'store').glob('*.json'))


def test_an_evaluation_on_other_data_than_the_scales_is_not_recorded(tmp_path):
    # the data root is a location outside every hash: a subset given as --data-root must not stand in for the
    # scale's test split
    path = tmp_path / 'other.py'
    path.write_text(f"_base_ = [{TINY!r}]\nnum_test_images = 10000\n")
    other = Scale.load(str(path))
    cells = expand(other, ['decoder_depth'], 1, ['1'])
    lines = []
    spec = SweepSpec(scale=str(path), store=str(tmp_path / 'store'), work_root=str(tmp_path / 'work'),
                     evaluations=['knn'])
    assert run_sweep(cells, spec, log=lines.append) == []
    assert any("knn evaluation of decoder_depth=1 seed 0 read 32 test images where scale 'tiny' has 64 train "
               "and 10,000 test images" in line for line in lines), lines
    # and nothing of it is kept for a later run to reuse, whatever data root that run gives
    assert not list((tmp_path / 'work').glob('*/eval/knn-*.json'))
    path.write_text(f"_base_ = [{TINY!r}]\nnum_train_images = None\nnum_test_images = 10000\n")
    lines.clear()
    assert run_sweep(expand(Scale.load(str(path)), ['decoder_depth'], 1, ['1']), spec, log=lines.append) == []
    assert any("where scale 'tiny' has 10,000 test images" in line for line in lines), lines


def test_a_work_root_moved_whole_still_serves_its_trained_cells(tiny, tmp_path, monkeypatch):
    # mmengine's pointer and the run summary name checkpoints by absolute path; a work root carried to
    # another checkout or disk must not send its cells back to pretraining, nor fail them
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    first = run_sweep(cells, _spec(tmp_path), log=lambda _: None)[0]
    (tmp_path / 'work').rename(tmp_path / 'moved')
    import mimbench.ablation.execute as execute
    launched = []
    real_popen = execute.subprocess.Popen
    monkeypatch.setattr(execute.subprocess, 'Popen', lambda *a, **k: launched.append(a) or real_popen(*a, **k))
    spec = SweepSpec(scale=TINY, store=str(tmp_path / 'store'), work_root=str(tmp_path / 'moved'),
                     evaluations=['knn', 'lin'])
    lines = []
    records = run_sweep(cells, spec, log=lines.append)
    assert len(records) == 1, lines
    assert set(records[0]['metrics']) == {'knn', 'lin'}
    assert records[0]['metrics']['knn'] == first['metrics']['knn']   # the moved evaluation is found, not redone
    assert not [cmd for cmd in launched if 'mimbench.cli.train' in cmd[0]]   # and nothing is trained again


@pytest.mark.slow
def test_a_sweep_killed_during_a_cell_resumes_that_cell_and_keeps_the_finished_one(tmp_path):
    cmd = [sys.executable, 'tools/ablate.py', '--scale', TINY, '--axis', 'decoder_depth', '--values', '1', '2',
           '--results', str(tmp_path / 'results'), '--work-root', str(tmp_path / 'work')]
    store = tmp_path / 'results' / 'ablation' / 'tiny'
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    # kill the whole process group as soon as the first record exists and the second cell has started
    deadline = time.time() + 300
    while time.time() < deadline:
        if len(list(store.glob('*.json'))) == 1 and len(list((tmp_path / 'work').glob('*/cell_config.py'))) == 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = sorted(store.glob('*.json'))
    assert len(first) == 1
    mtime = first[0].stat().st_mtime_ns
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '2 cells: 1 already in' in out.stdout
    assert len(list(store.glob('*.json'))) == 2 and first[0].stat().st_mtime_ns == mtime
    assert (tmp_path / 'results' / 'decoder_tiny.md').is_file()


@pytest.mark.slow
def test_two_workers_run_cells_in_parallel_processes(tiny, tmp_path):
    cells = expand(tiny, ['decoder_depth'], 1, ['1', '2'])
    lines = []
    records = run_sweep(cells, _spec(tmp_path), workers=2, log=lines.append)
    assert len(records) == 2 and '(2 workers)' in lines[0]
    assert {r['key'] for r in records} == {c.key for c in cells}


def _worker_dies(spec, cell):
    os._exit(3)   # as an out-of-memory kill would: no exception, no result


def test_a_worker_process_that_dies_fails_its_cells_by_name_and_the_sweep_reports_it(tiny, tmp_path, monkeypatch):
    import mimbench.ablation.sweep as sweep
    monkeypatch.setattr(sweep, '_attempt_quietly', _worker_dies)
    cells = expand(tiny, ['decoder_depth'], 1, ['1', '2'])
    lines = []
    assert run_sweep(cells, _spec(tmp_path), workers=2, log=lines.append) == []
    assert '2 cells failed' in lines[-1]
    for cell in cells:
        assert any(cell.name in line and 'FAILED' in line and 'worker died' in line for line in lines)


@pytest.mark.slow
def test_cells_run_as_submitit_jobs(tiny, tmp_path):
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    lines = []
    records = run_sweep(cells, _spec(tmp_path), launcher='submitit-local', log=lines.append)
    assert len(records) == 1 and any(line.startswith('submitted decoder_depth=1 seed 0 as job') for line in lines)
    assert list((tmp_path / 'work' / 'submitit').rglob('*_result.pkl'))


HERE = dict(machine='x86_64', cpus=2, model='Xeon')


def _timed_record(finished, cpu_seconds, host=None, evals=None, pretrained=True, world_size=1):
    # 10 iterations of batch 4 at 2 GFLOPs per image: 80 GFLOP of pretraining
    return dict(key=finished, finished=finished, host=host or HERE,
                pretrain=dict(cpu_seconds=cpu_seconds, iters=10, world_size=world_size) if pretrained else None,
                flops_gflops_per_img=dict(train=2.0), config_text='train_dataloader = dict(batch_size=4)\n',
                extract_seconds=100.0,
                metrics={n: dict(wall_time_s=s, eval_hash=h) for n, (s, h) in (evals or {}).items()})


def test_the_store_rate_is_the_median_of_this_hosts_latest_pretrained_cells():
    from mimbench.ablation.estimate import CellEstimate, measured_rate
    records = [_timed_record('2026-01-01', 1.0),                     # oldest: outside a window of three
               _timed_record('2026-01-02', 8.0, evals={'knn': (20.0, 'h1')}),
               _timed_record('2026-01-03', 4.0, evals={'knn': (40.0, 'h1')}),
               _timed_record('2026-01-04', 2.0, evals={'knn': (5.0, 'old recipe')}),
               _timed_record('2026-01-05', 0.1, host=dict(HERE, model='EPYC')),     # another CPU, same size
               _timed_record('2026-01-06', 0.1, world_size=4),                 # rank 0's CPU time only
               _timed_record('2026-01-07', None, pretrained=False),
               dict(_timed_record('2026-01-08', 0.1), config_text='this is not a config (')]
    resumed_here = _timed_record('2026-01-09', 0.1)       # its first stretch ran on another CPU
    resumed_here['pretrain']['hosts'] = [dict(HERE, model='EPYC', from_iter=0), dict(HERE, from_iter=5)]
    records.append(resumed_here)
    assert measured_rate(records[:2], {'knn': 'h1'}, host=HERE) is None       # too few cells to say
    rate = measured_rate(records, {'knn': 'h1'}, host=HERE, window=3)
    assert (rate.cells, rate.low, rate.gflops_per_cpu_s, rate.high) == (3, 10.0, 20.0, 40.0)
    assert rate.eval_s == 100.0 + 30.0      # extraction + the median knn time of the cells with this eval config
    est = CellEstimate(None, 2.0, 0.5, pretrain_gflop=400.0, pretrain_s=1.0, eval_s=7.0)
    assert rate.total_s(est) == 400.0 / 20.0 + 130.0
    assert measured_rate(records, {'att': 'h2'}, host=HERE, window=3).total_s(est) == 20.0 + 7.0
    assert measured_rate(records, {'knn': 'h1'}, host=HERE, window=3, extracts=False).eval_s == 30.0


def test_a_dry_run_on_a_busy_machine_says_its_times_are_an_idle_machines(monkeypatch):
    from mimbench.ablation import estimate
    monkeypatch.setattr(estimate.os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(estimate.os, 'cpu_count', lambda: 2)
    monkeypatch.setattr(estimate.os, 'getloadavg', lambda: (0.4, 0.4, 0.4), raising=False)
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    assert estimate.busy_note(threads=2) == ''
    monkeypatch.setattr(estimate.os, 'getloadavg', lambda: (2.9, 2.0, 1.0), raising=False)
    assert ("load average 2.9 on 2 cores: the times below are an idle machine's; beside that work the cells take "
            "longer") in estimate.busy_note(threads=2)
    monkeypatch.setattr(estimate.os, 'getloadavg', lambda: (0.1, 0.1, 0.1), raising=False)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert ('OMP_NUM_THREADS=1 lets torch use 1 of 2 cores: the times below are for 1 thread'
            in estimate.busy_note(threads=1))


def test_the_estimates_cpu_rate_is_one_cores_rate_in_cpu_time_times_the_threads(monkeypatch):
    """Measured in wall-clock time beside two running cells, the rate read 0.4 to 23 GFLOP/s from one step of a
    study to the next and its estimates ran to thousands of hours; one core's rate in CPU time holds."""
    import torch
    from mimbench.ablation import estimate
    from mimbench.ablation.cells import Scale
    scale = Scale.load('micro')
    eff = scale.cfg.get('efficiency', 0.5)
    monkeypatch.setattr(estimate, 'busy_note', lambda threads: '')
    calls = []
    for measured, shown in ((0.37, '0.37 GFLOP/s a core'), (3.14, '3.1 GFLOP/s a core'),
                            (123.4, '123 GFLOP/s a core')):
        monkeypatch.setattr(estimate, 'matmul_gflops', lambda *a, **k: calls.append(k) or measured)
        rate, source = estimate.device_gflops(scale)
        threads = torch.get_num_threads()
        assert shown in source and f'x {threads} thread' in source
        assert rate == pytest.approx(measured * threads * eff)
    assert all(k.get('per_core') for k in calls)


def test_progress_reports_cells_done_and_an_eta():
    lines = []
    progress = Progress(total=4, already=1, workers=1, estimate_s=600, log=lines.append)
    assert progress.eta() == 1800
    cell = type('C', (), {'name': 'mask_ratio=0.5 seed 0'})()
    progress.finished(Outcome(cell, 'done', 120.0, {'metrics': {'lin': {'accuracy': 51.234}}}))
    assert lines[-1] == '[2/4] mask_ratio=0.5 seed 0 (2m00s): lin 51.23; ETA 4m00s'
    # a cell another sweep holds took no time here: it must not pull the ETA down
    progress.finished(Outcome(cell, 'busy', 0.5, message='skipped, abc is being run by pid 7'))
    assert lines[-1] == '[3/4] mask_ratio=0.5 seed 0 (0m00s): skipped, abc is being run by pid 7; ETA 2m00s'
    progress.finished(Outcome(cell, 'failed', 60.0, message='decoder_depth=1 seed 0: KeyError: x'))
    assert lines[-1] == '[4/4] mask_ratio=0.5 seed 0 (1m00s): FAILED: decoder_depth=1 seed 0: KeyError: x'


# ------------------------------------------------------------------------------------------------ reports

def _fixture_store(tiny, tmp_path):
    """The committed fixture records, re-keyed for the current configs (keys hash the configs; the report's
    layout is what the fixture pins down)."""
    store = ResultStore(tmp_path / 'store')
    for path in sorted((FIXTURE / 'store').glob('*.json')):
        record = json.loads(path.read_text())
        cell = make_cell(tiny, get_axis(record['axis']),
                         get_axis(record['axis']).values(tiny.context(), [record['value']])[0], record['seed'])
        store.put(dict(record, key=cell.key, metrics=current_metrics(tiny, record['metrics'])))
    return store


def _tables(markdown: str) -> dict[str, dict[str, list[str]]]:
    """Each ``## section``'s table rows of a report: first cell -> the other cells."""
    tables, section = {}, None
    for line in markdown.splitlines():
        if line.startswith('## '):
            section = line[3:]
        elif line.startswith('| ') and not line.startswith('|---') and section:
            cells = [c.strip() for c in line.strip('|').split('|')]
            tables.setdefault(section, {})[cells[0]] = cells[1:]
    return tables


def test_the_report_reads_every_row_from_the_store_and_gives_the_same_text_for_the_same_store(tiny, tmp_path):
    store = _fixture_store(tiny, tmp_path)
    paths = write_report(tiny, ['decoder_depth', 'decoder_width'], store, tmp_path / 'out')
    assert sorted(p.name for p in paths) == ['decoder_tiny.md', 'decoder_tiny.png']   # scale in the name
    md = (tmp_path / 'out/decoder_tiny.md').read_text()
    depth = _tables(md)['Decoder depth (MAE Table 1a)']
    assert depth['blocks'] == ['default', 'ft', 'lin', 'kNN', 'paper ft', 'paper lin']
    assert depth['1'] == ['ours', '-', '60.50 ± 0.71', '47.50 ± 3.54', '84.8', '65.5']     # mean ± std, 2 seeds
    assert depth['8'] == ['paper', '-', '66.00 (n=1)', '52.00 (n=1)', '84.9', '73.5']     # one seed finished
    assert depth['12'][1:4] == ['-', '-', '-']                                            # not run
    width = _tables(md)['Decoder width (MAE Table 1b)']
    assert width['16 (paper 512)'][:3] == ['ours + paper', '-', '60.50 ± 0.71']
    assert ('Check (lin): paper lin best at 8; ours best at 8; 4 of 5 rows measured; our rows span 5.50 points; '
            'mean seed std 0.71; rank correlation with the paper over 4 rows +1.00.') in md
    write_report(tiny, ['decoder_depth', 'decoder_width'], store, tmp_path / 'again')
    assert (tmp_path / 'again/decoder_tiny.md').read_text() == md


def test_report_rows_hold_mean_and_std_over_seeds_and_mark_both_defaults(tiny, tmp_path):
    rows = axis_rows(tiny, get_axis('decoder_depth'), _fixture_store(tiny, tmp_path))
    by_key = {r.value.key: r for r in rows}
    mean, std, n = by_key['1'].mean_std('knn')      # the tiny scale's decoder has one block
    assert n == 2 and abs(mean - 47.5) < 1e-9 and abs(std - 3.5355339) < 1e-6
    assert by_key['1'].ours_default and not by_key['1'].value.paper_default
    assert by_key['8'].value.paper_default and by_key['8'].value.paper.lin == 73.5


def test_the_mask_token_table_sets_the_whole_models_flops_ratio_beside_the_encoders(tiny, tmp_path):
    """The paper's 3.3x counts encoder and decoder: a ratio of the encoder alone (ours: 3.9x) is not comparable
    to it, so the table shows both, each against the default row."""
    from mimbench.ablation.report import axis_table
    axis, store = get_axis('mask_token'), ResultStore(tmp_path / 'store')
    flops = {'with': dict(encoder=0.4, forward=0.5, train=1.5), 'without': dict(encoder=0.1, forward=0.2, train=0.6)}
    for value in axis.values(tiny.context()):
        cell = make_cell(tiny, axis, value, 0)
        store.put(dict(key=cell.key, axis=axis.name, value=value.key, seed=0, scale='tiny',
                       flops_gflops_per_img=flops[value.key],
                       metrics=current_metrics(tiny, {'lin': dict(accuracy=50.0)}),
                       pretrain=dict(cpu_seconds=1.0, wall_seconds=1.0)))
    table = axis_table(tiny, axis, axis_rows(tiny, axis, store))
    header, _, with_m, without_m = [line.split(' | ') for line in table.splitlines() if line.startswith('|')]
    encoder, model = header.index('encoder GFLOPs/img'), header.index('model GFLOPs/img (enc + dec)')
    assert (with_m[encoder], with_m[model]) == ('0.4 (4.0x)', '0.5 (2.5x)')
    assert (without_m[encoder], without_m[model]) == ('0.1 (1.0x)', '0.2 (1.0x)')
    assert 'whole' in axis.finding and '3.3x' in axis.finding


@pytest.mark.parametrize('name', sorted(p.stem for p in (REPO / 'configs/ablation').glob('*.py')))
def test_every_scales_tables_state_its_pretraining_epochs_once(name, tmp_path):
    """The note under a table adds the epochs to the scale's description, which must not say them again."""
    from mimbench.ablation.report import axis_table
    scale, axis = Scale.load(name), get_axis('mask_sampling')
    note = next(line for line in axis_table(scale, axis, axis_rows(scale, axis, ResultStore(tmp_path))).splitlines()
                if line.startswith('Ours: '))
    ours = note.split(' Paper: ')[0]
    epochs = scale.cfg.pretrain_options.get('train_cfg.max_epochs')
    assert ours.count('pretraining epochs') == 1 and f', {epochs} pretraining epochs per cell,' in ours


def test_a_metric_of_an_earlier_evaluation_recipe_is_not_read_and_the_table_says_so(tiny, tmp_path):
    # an edited eval config is a new eval hash: a sweep re-evaluates the cells it runs, and until then the old
    # recipe's numbers must not be averaged with the new one's
    store = _fixture_store(tiny, tmp_path)
    axis = get_axis('decoder_depth')
    cell = make_cell(tiny, axis, axis.values(tiny.context(), ['1'])[0], 0)
    record = store.records()[cell.key]
    record['metrics']['lin']['eval_hash'] = '000000000000'
    store.put(record)
    (table,) = write_report(tiny, ['decoder_depth'], store, tmp_path / 'out', plots=False)
    md = table.read_text()
    line = next(line for line in md.splitlines() if line.startswith('| 1 |'))
    assert [c.strip() for c in line.strip('|').split('|')][3] == '61.00 (n=1)'    # seed 1 only; was 60.50 ± 0.71
    assert ('1 stored metric of these cells was computed under an earlier evaluation recipe and is not shown; '
            'the sweep re-evaluates them.') in md


def test_records_that_match_no_current_cell_are_left_out_of_the_tables_with_the_reason(tiny, tmp_path):
    """A changed config or a retrained tokenizer makes new cells; the old records stay in the store, and the
    table and the status page say how many they leave out and why."""
    from mimbench.ablation.report import write_status
    store = _fixture_store(tiny, tmp_path)
    before = write_report(tiny, ['decoder_depth', 'decoder_width'], store, tmp_path / 'before', plots=False)
    store.put(dict(axis='decoder_depth', value='1', seed=0, scale='tiny', key='0123456789abcdef', metrics={},
                   pretrain=dict(cpu_seconds=7200.0),
                   config_text="model = dict(target=dict(type='TokenTarget', checkpoint='work_dirs/tok.pth'))\n"))
    (table,) = write_report(tiny, ['decoder_depth', 'decoder_width'], store, tmp_path / 'after', plots=False)
    assert table.read_text() == before[0].read_text().replace(
        'top-1 % (fine-tune / linear). "default" marks our base setting and the paper\'s; "~" marks paper values '
        'read off a figure.\n\n| blocks',
        'top-1 % (fine-tune / linear). "default" marks our base setting and the paper\'s; "~" marks paper values '
        'read off a figure. 1 stored record of this axis is not shown: its config changed since it ran, or the '
        'weight file it read (work_dirs/tok.pth) has other content here.\n\n| blocks', 1)
    status = write_status(tiny, store, tmp_path / 'after').read_text()
    assert status.endswith('\n\n1 more stored record (2.00 CPU-hours) is in no table: its config changed since it '
                           'ran, or the weight file it read (work_dirs/tok.pth) has other content here. The store '
                           'keeps it: 0123456789abcdef.\n')


def test_a_plot_says_when_the_paper_publishes_no_values_for_its_axis(tiny, tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mimbench.ablation.report import plot_rows
    store = _fixture_store(tiny, tmp_path)
    notes = {}
    for name in ('decoder_depth', 'cae_align_weight'):      # paper values / "reports lambda = 2, no sweep"
        fig, (ours, paper) = plt.subplots(1, 2)
        plot_rows(get_axis(name), axis_rows(tiny, get_axis(name), store), ours, paper)
        notes[name] = [t.get_text() for t in paper.texts]
        plt.close(fig)
    assert notes == {'decoder_depth': [], 'cae_align_weight': ['no values published for this axis']}


def test_every_axis_has_a_title_column_and_paper_finding():
    for axis in AXES.values():
        assert axis.title and axis.column and axis.finding


def test_the_training_clock_adds_up_the_segments_of_a_resumed_run(tmp_path):
    config = tmp_path / 'clocked.py'
    config.write_text(f"_base_ = ['{REPO / 'tests/configs/tiny_mae.py'}']\n"
                      "custom_hooks = [dict(type='TrainClockHook', interval=4)]\n")
    train = [sys.executable, 'tools/train.py', str(config), '--work-dir', str(tmp_path / 'run')]
    subprocess.run(train + ['--max-iters', '4'], cwd=REPO, check=True, capture_output=True, timeout=300)
    first = read_json(tmp_path / 'run/train_clock.json')
    assert first['iter'] == 4 and first['segments'] == 1 and first['cpu_seconds'] > 0
    subprocess.run(train + ['--resume', '--max-iters', '8'], cwd=REPO, check=True, capture_output=True, timeout=300)
    second = read_json(tmp_path / 'run/train_clock.json')
    assert second['iter'] == 8 and second['segments'] == 2
    assert second['wall_seconds'] > first['wall_seconds'] and second['cpu_seconds'] > first['cpu_seconds']
    # one machine ran both stretches: one entry, from the first iteration
    assert first['hosts'] == second['hosts'] == [dict(host_info(), from_iter=0)]


def test_the_training_clock_names_each_machine_a_resumed_run_continued_on(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mimbench.engine import hooks
    runner = SimpleNamespace(work_dir=str(tmp_path), iter=0, _resume=False)
    clock = hooks.TrainClockHook()
    clock.before_train(runner)
    runner.iter = 300
    clock.after_train(runner)
    # killed, resumed on a VM of the same name and size without bf16 units
    elsewhere = dict(host_info(), bf16_units=not host_info()['bf16_units'])
    monkeypatch.setattr(hooks, 'host_info', lambda: elsewhere)
    runner._resume = True
    clock.before_train(runner)
    runner.iter = 500
    clock.after_train(runner)
    assert read_json(tmp_path / 'train_clock.json')['hosts'] == [dict(host_info(), from_iter=0),
                                                                  dict(elsewhere, from_iter=300)]
    # a clock from before machines were named: the first stretch's machine is unknown
    (tmp_path / 'train_clock.json').write_text('{"iter": 300, "segments": 1, "wall_seconds": 1, "cpu_seconds": 1}')
    clock.before_train(runner)
    clock.after_train(runner)
    assert read_json(tmp_path / 'train_clock.json')['hosts'] == [dict(from_iter=0), dict(elsewhere, from_iter=500)]
    # a run resumed past its first iteration without any clock: the same
    (tmp_path / 'train_clock.json').unlink()
    clock.before_train(runner)
    clock.after_train(runner)
    assert read_json(tmp_path / 'train_clock.json')['hosts'] == [dict(from_iter=0), dict(elsewhere, from_iter=500)]


def test_report_alone_rebuilds_every_scales_tables_and_every_study_from_the_stores(tmp_path, capsys):
    from mimbench.cli.ablate import main
    results = tmp_path / 'results'
    for scale, key in (('micro', 'a36cdf0f771ae07e'), ('micro_bf16_20ep', '6e57483ec4f8b235')):  # default cells
        (results / 'ablation' / scale).mkdir(parents=True)
        record = REPO / 'docs/results/ablation' / scale / f'{key}.json'
        (results / 'ablation' / scale / record.name).write_bytes(record.read_bytes())
    (results / 'ablation' / 'elsewhere').mkdir()          # a store of a scale given by path: not guessed at
    main(['--report', '--results', str(results)])
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith(('===', 'note:'))] == [
        f'note: {results}/ablation/elsewhere is the store of no scale in configs/ablation/; skipped',
        '=== scale micro', '=== scale micro_bf16_20ep', '=== study schedule']
    for name in ('ablation_status.md', 'ablation_status_micro_bf16_20ep.md', 'schedule_study.md',
                 'schedule_study.png'):
        assert (results / name).is_file(), name
    assert '| 20 | 1 | 51.91 | 59.99 | 40.29 | 69.14 |' in (results / 'schedule_study.md').read_text()


def test_decoder_tables_tool_is_the_decoder_axis_of_ablate(tmp_path):
    out = subprocess.run([sys.executable, 'tools/decoder_tables.py', '--scale', TINY, '--dry-run', '--values', '1'],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and 'decoder_depth, decoder_width' in out.stderr   # decoder = depth + width
    out = subprocess.run([sys.executable, 'tools/decoder_tables.py', '--scale', TINY, '--dry-run'],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'decoder_depth=12 seed 0' in out.stdout and 'decoder_width=32 seed 0' in out.stdout


def test_a_cell_running_in_another_live_process_is_skipped_and_a_dead_ones_lock_is_taken_over(tiny, tmp_path):
    from mimbench.ablation.execute import cell_lock, CellBusy
    import socket
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    work = tmp_path / 'work' / cells[0].key
    work.mkdir(parents=True)
    (work / '.lock').write_text(f'{socket.gethostname()}:{os.getppid()}')     # alive: pytest's parent
    lines = []
    assert run_sweep(cells, _spec(tmp_path), log=lines.append) == []
    assert 'skipped' in lines[-1] and 'failed' not in '\n'.join(lines)
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (work / '.lock').write_text(f'{socket.gethostname()}:{dead.pid}')
    with cell_lock(work):
        assert (work / '.lock').read_text().split()[0].endswith(f':{os.getpid()}')
        with pytest.raises(CellBusy):
            with cell_lock(work):
                pass
    assert not (work / '.lock').exists()


def test_probe_columns_share_one_feature_extraction_per_split(tiny, tmp_path):
    cells = expand(tiny, ['decoder_depth'], 1, ['1'])
    lines = []
    run_sweep(cells, _spec(tmp_path, ('lin', 'lin_mean')), log=lines.append)
    assert any('extracting cls/mean features in one pass' in line for line in lines)
    for name in ('lin', 'lin_mean'):
        (record,) = [json.loads(p.read_text()) for p in (tmp_path / 'work' / cells[0].key / 'eval').glob(f'{name}-*')]
        assert record['features']['train']['extracted'] == [] and record['features']['test']['cache_hits']


def test_the_check_line_compares_any_probe_column_with_the_papers_linear_probe(tiny, tmp_path):
    from mimbench.ablation.report import check_line
    rows = axis_rows(tiny, get_axis('decoder_depth'), _fixture_store(tiny, tmp_path))
    line = check_line(rows, 'knn')
    assert line.startswith('Check (kNN): paper lin best at 8; ours best at 8; 4 of 5 rows measured;')
    assert 'rank correlation with the paper over 4 rows' in line
    assert check_line(rows, 'lin_mean') == 'Check (lin (mean-pool)): 0 of 5 rows measured, nothing to compare yet.'
    assert check_line(rows[:1] + [rows[-1]], 'lin') == 'Check (lin): 1 of 2 rows measured, nothing to compare yet.'


def test_other_columns_are_checked_only_where_two_rows_are_measured(tiny, tmp_path):
    from mimbench.ablation.report import other_checks
    rows = axis_rows(tiny, get_axis('decoder_depth'), _fixture_store(tiny, tmp_path))
    lines = other_checks(rows, ['ft', 'lin', 'knn'], check_metric='lin')
    assert lines[0] == 'The same check on our other columns:'
    assert [line.split(':')[0] for line in lines if line.startswith('- ')] == ['- kNN']   # ft: no row measured
    assert other_checks(rows[:1] + rows[-1:], ['lin', 'knn'], check_metric='lin') == []   # knn: one row measured


def test_the_status_page_lists_every_table_with_its_progress_and_links_only_existing_files(tiny, tmp_path):
    from mimbench.ablation.report import write_status
    store = _fixture_store(tiny, tmp_path)
    write_report(tiny, ['decoder_depth', 'decoder_width'], store, tmp_path / 'out')
    text = write_status(tiny, store, tmp_path / 'out').read_text()
    assert (tmp_path / 'out' / 'ablation_status_tiny.md').is_file()
    rows = {line.split(' | ')[0].lstrip('| '): line.split(' | ') for line in text.splitlines()
            if line.startswith('| ') and 'MAE' in line or line.startswith('| CAE')}
    assert len(rows) == len(AXES)
    depth = rows['Decoder depth (MAE Table 1a)']
    assert depth[1:4] == ['[decoder_tiny.md](decoder_tiny.md)', '4 / 5', '7 / 5']   # tiny plans 1 seed
    assert depth[5].startswith('paper lin best at 8; ours best at 8; 4 of 5 rows measured;')
    # the default cell (depth 1 here) is a row of every MAE table; its table file does not exist yet
    assert rows['Mask sampling (MAE Table 1f)'][1:4] == ['-', '1 / 4', '2 / 4']
    assert rows['CAE teacher momentum'][4:] == ['0.00', 'not run |']
    assert rows['Method (ViT-L/16, ImageNet-1K; MAE Table 3, CAE)'][5].startswith(
        "not available: scale 'tiny' has no method 'beit'")
    assert f'Total: {len(store.records())} distinct cells' in text


def test_a_scale_on_the_device_data_path_makes_other_cells_and_trains_them_there(micro):
    from mimbench.ablation.execute import train_command
    device = Scale.load('micro_bf16_device')
    bf16 = Scale.load('micro_bf16')
    value = get_axis('method').values(micro.context(), ['mae'])[0]
    a, b = (make_cell(s, get_axis('method'), value, 0) for s in (bf16, device))
    assert a.config().pretty_text == b.config().pretty_text and a.key != b.key
    assert '--device-data' in train_command(b, device, Path('c.py'), Path('w'), None)
    assert '--device-data' not in train_command(a, bf16, Path('c.py'), Path('w'), None)


def test_the_100_epoch_scale_is_the_20_epoch_cell_five_times_longer_on_the_device_data_path(micro):
    from mimbench.ablation.execute import expected_iterations, train_command
    long, twenty = Scale.load('micro_bf16_device_100ep'), Scale.load('micro_bf16_20ep')
    value = get_axis('method').values(micro.context(), ['mae'])[0]
    a, b = (make_cell(s, get_axis('method'), value, 0) for s in (twenty, long))
    assert a.config().pretty_text.replace('max_epochs=20', 'max_epochs=100') == b.config().pretty_text
    assert expected_iterations(b, long) == 5 * expected_iterations(a, twenty) == 19500
    assert '--device-data' in train_command(b, long, Path('c.py'), Path('w'), None) and a.key != b.key


def test_the_device_checks_data_pack_holds_every_file_byte_for_byte(tmp_path):
    """The 100-epoch cells read the whole dataset on the GPU machine, which gets it only through this pack."""
    import tarfile
    from mimbench.cli.device_check import pack_dataset
    root = tmp_path / 'cifar'
    files = {'train/cat/1.jpg': b'\xff\xd8one', 'train/dog/2.jpg': b'\xff\xd8two', 'test/cat/3.jpg': b'three'}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    pack = pack_dataset(root, tmp_path / 'pack' / 'full.tar.xz')
    with tarfile.open(pack, 'r:xz') as tar:
        tar.extractall(tmp_path / 'out', filter='data')
    got = {p.relative_to(tmp_path / 'out' / 'cifar10').as_posix(): p.read_bytes()
           for p in (tmp_path / 'out').rglob('*') if p.is_file()}
    assert got == files and not list(pack.parent.glob('*.tmp'))


def test_a_cell_trained_on_another_dataset_than_its_scales_is_not_recorded(micro):
    """The data root is a location, not part of a cell's key: a --data-root holding a subset would otherwise
    store its results under the full dataset's cells. The iterations trained give it away."""
    from mimbench.ablation.execute import CellFailed, check_trained_iterations, expected_iterations
    cell = make_cell(micro, get_axis('method'), get_axis('method').values(micro.context(), ['mae'])[0], 0)
    assert expected_iterations(cell, micro) == 975                         # 5 epochs of 50,000 // 256
    check_trained_iterations(cell, micro, dict(iters=975))
    with pytest.raises(CellFailed, match="trained 95 iterations where scale 'micro' takes 975 \\(50,000 training"):
        check_trained_iterations(cell, micro, dict(iters=95))
    assert expected_iterations(make_cell(micro, get_axis('method'), cell.value, 0, max_iters=20), micro) is None


def test_every_stored_metric_is_one_todays_recipes_show():
    """An edit to an evaluation recipe changes its eval hash, and the tables then drop every stored number of
    that column (it would run again). Such an edit must be deliberate: today each metric in the repository's
    stores is one its column's present recipe shows."""
    from mimbench.ablation.execute import current_eval_hashes
    stores = sorted(p for p in (REPO / 'docs/results/ablation').iterdir() if p.is_dir())
    assert {p.name for p in stores} >= {'micro', 'micro_bf16_20ep'}
    for store in stores:
        current = current_eval_hashes(Scale.load(store.name))
        stale = sorted((record['key'], name) for record in ResultStore(store).records().values()
                       for name, metric in record['metrics'].items()
                       if metric.get('eval_hash') not in current.get(name, set()))
        assert not stale, f'{store.name}: stored metrics no present recipe shows: {stale}'
