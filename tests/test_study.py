"""A study (configs/studies/): the same ablation rows at several schedules, run in a fixed order, and each of the
papers' findings judged at every schedule against that schedule's pooled seed spread."""
import subprocess
import sys
from pathlib import Path

import pytest

from mimbench.ablation.axes import AblationError, get_axis
from mimbench.ablation.cells import Scale, make_cell
from mimbench.ablation.store import ResultStore
from mimbench.ablation.study import (Effect, Study, StudyData, critical_t, detectable_effect, plan,
                                     sensitivity_table, trend, write_study_report)
from tests.fixtures.records import current_metrics

REPO = Path(__file__).resolve().parents[1]

STUDY = """
study = 'tiny'
title = 'a two-schedule study'
schedules = {5: 'micro', 20: 'micro_bf16_20ep'}
spread_seeds = 4
row_seeds = {5: 2, 20: 2}
rows = dict(decoder_depth=['1', '2', '8'])
order = [(20, 'spread'), (5, 'spread'), (20, 1), (20, 'rows')]
findings = [dict(name='decoder depth 8 over 1', axis='decoder_depth', better='8', worse='1')]
confidence = 0.95
"""


def _study(tmp_path, text=STUDY) -> Study:
    path = tmp_path / 'tiny.py'
    path.write_text(text)
    return Study.load(str(path))


def _store(tmp_path, scale_name: str, accuracies: dict[str, list[float]], axis: str = 'decoder_depth',
           store: ResultStore | None = None) -> ResultStore:
    """A store holding ``axis`` cells of ``scale_name``: value -> lin_mean accuracy per seed."""
    scale = Scale.load(scale_name)
    store = store or ResultStore(tmp_path / scale_name)
    axis = get_axis(axis)
    for key, accs in accuracies.items():
        value = axis.values(scale.context(), [key])[0]
        for seed, acc in enumerate(accs):
            cell = make_cell(scale, axis, value, seed)
            store.put(dict(key=cell.key, scale=scale.name, axis=axis.name, value=key, seed=seed,
                           metrics=current_metrics(scale, {'lin_mean': {'accuracy': acc},
                                                           'lin': {'accuracy': acc - 10}}),
                           pretrain={'cpu_seconds': 3600.0}))
    return store


def test_the_plan_runs_the_spread_first_then_each_rows_seeds_in_the_configured_order(tmp_path):
    steps = plan(_study(tmp_path))
    assert [(s.label, s.axis, s.values, s.seeds) for s in steps] == [
        (20, 'method', ['mae'], 4), (5, 'method', ['mae'], 4),
        (20, 'decoder_depth', ['1', '2', '8'], 1), (20, 'decoder_depth', ['1', '2', '8'], 2)]
    assert steps[0].command == ('python tools/ablate.py --scale micro_bf16_20ep --axis method --values mae '
                                '--seeds 4')
    assert steps[1].command == 'python tools/ablate.py --axis method --values mae --seeds 4'


def test_cells_a_study_will_fine_tune_are_fine_tuned_by_the_step_that_first_pretrains_them(tmp_path):
    """A work dir does not outlive its machine: a cell pretrained in one session and fine-tuned in a later one
    on a new machine could never be fine-tuned. So the first step that pretrains a cell of the fine-tuning
    step fine-tunes it: the spread step is preceded by its fine-tuned seed, a row step fine-tunes the values
    of the fine-tuning step (others run apart), later steps and other schedules fine-tune nothing."""
    def steps(finetune, order):
        text = STUDY.replace("rows = dict(decoder_depth=['1', '2', '8'])",
                             "rows = dict(decoder_depth=['1', '2', '8'], method=['scratch', 'mae'])")
        text = text.replace("order = [(20, 'spread'), (5, 'spread'), (20, 1), (20, 'rows')]",
                            f'finetune = {finetune}\norder = {order}')
        return [(s.label, s.axis, s.values, s.seeds, s.finetune) for s in plan(_study(tmp_path, text))]
    both = "dict(axis='method', values=['scratch', 'mae'], seeds=1)"
    assert steps(both, "[(20, 'spread'), (5, 'spread'), (20, 1), (20, 'finetune'), (20, 'rows')]") == [
        (20, 'method', ['mae'], 1, True), (20, 'method', ['mae'], 4, False), (5, 'method', ['mae'], 4, False),
        (20, 'decoder_depth', ['1', '2', '8'], 1, False), (20, 'method', ['scratch', 'mae'], 1, True),
        (20, 'method', ['scratch', 'mae'], 1, True),
        (20, 'decoder_depth', ['1', '2', '8'], 2, False), (20, 'method', ['scratch', 'mae'], 2, False)]
    scratch = "dict(axis='method', values=['scratch'], seeds=1)"
    assert steps(scratch, "[(20, 1), (20, 'finetune')]") == [
        (20, 'decoder_depth', ['1', '2', '8'], 1, False), (20, 'method', ['scratch'], 1, True),
        (20, 'method', ['mae'], 1, False), (20, 'method', ['scratch'], 1, True)]
    # a schedule without a fine-tuning step fine-tunes nothing
    assert not any(step[-1] for step in steps(both, "[(20, 'spread'), (5, 1)]"))


def test_a_study_fine_tunes_one_axis_in_its_own_step_and_reports_ft_without_a_verdict_at_one_seed(tmp_path):
    study = _study(tmp_path, STUDY.replace("order = [", "finetune = dict(axis='decoder_depth', values=['1', '8'], "
                                           "seeds=1)\norder = [(20, 'finetune'), "))
    step = plan(study)[0]
    assert (step.label, step.axis, step.values, step.seeds, step.finetune) == (20, 'decoder_depth', ['1', '8'], 1,
                                                                              True)
    assert step.command.endswith('--values 1 8 --seeds 1 --finetune')
    stores = {5: _store(tmp_path, 'micro', {'1': [50, 52], '8': [49, 51]}),
              20: _store(tmp_path, 'micro_bf16_20ep', {'1': [50, 52], '8': [56, 58]})}
    for record in stores[20].records().values():     # one fine-tuning per row, seed 0
        if record['seed'] == 0:
            ft = {'accuracy': 70.0 if record['value'] == '8' else 60.0}
            stores[20].put(dict(record, metrics=dict(record['metrics'],
                                                     **current_metrics(Scale.load('micro_bf16_20ep'), {'ft': ft}))))
    write_study_report(study, tmp_path / 'out', StudyData(study, stores))
    md = (tmp_path / 'out' / 'tiny_study.md').read_text()
    ft = next(line for line in md.splitlines() if line.startswith('|  | ft |'))
    assert [c.strip() for c in ft.strip('|').split('|')] == ['', 'ft', '-', '+10.00 (n=1,1)', '',
                                                             'no seed spread to judge by']
    with pytest.raises(AblationError, match=r"finetune: values \['1', '12'\] must be among"):
        _study(tmp_path, STUDY.replace("order = [", "finetune = dict(axis='decoder_depth', values=['1', '12'], "
                                                    "seeds=1)\norder = ["))


def test_a_finding_must_compare_two_of_the_studys_rows(tmp_path):
    with pytest.raises(AblationError, match="rows '8' and '12'.*decoder_depth rows"):
        _study(tmp_path, STUDY.replace("worse='1'", "worse='12'"))


def test_an_effect_is_judged_against_the_spread_pooled_over_the_schedules_rows(tmp_path):
    study = _study(tmp_path)
    stores = {5: _store(tmp_path, 'micro', {'1': [50, 52], '8': [49, 51]}),
              20: _store(tmp_path, 'micro_bf16_20ep', {'1': [50, 52], '8': [60, 62]})}
    data = StudyData(study, stores)
    finding = study.cfg.findings[0]
    short, long = (data.effect(label, finding, 'lin_mean') for label in (5, 20))
    # sd pooled over the two rows: sqrt((2 + 2) / 2), 2 degrees of freedom; se of a difference of two 2-seed
    # means: sd * sqrt(1)
    assert short.diff == pytest.approx(-1.0) and short.se == pytest.approx(2 ** 0.5) and short.df == 2
    assert long.diff == pytest.approx(10.0) and long.se == pytest.approx(2 ** 0.5)
    assert (short.verdict(0.95), long.verdict(0.95)) == ('0', '+')


def test_a_row_with_many_seeds_is_judged_by_its_own_spread_and_the_others_by_their_pool(tmp_path):
    # the default cell (depth 2) spreads widely over four seeds; the two-seed rows do not
    study = _study(tmp_path)
    wide = _store(tmp_path, 'micro_bf16_20ep', {'1': [50, 52], '8': [60, 62], '2': [40, 50, 60, 50]})
    data = StudyData(study, {5: _store(tmp_path, 'micro', {}), 20: wide})
    assert data.spreads(20, 'lin_mean') == ((pytest.approx((200 / 3) ** 0.5), 3), (pytest.approx(2 ** 0.5), 2))
    # two rows of two seeds: the default cell's spread does not widen their comparison
    assert data.effect(20, study.cfg.findings[0], 'lin_mean').verdict(0.95) == '+'
    # against the default cell: Welch's standard error and degrees of freedom, and the 11 points do not show
    e = data.effect(20, dict(axis='decoder_depth', better='8', worse='2'), 'lin_mean')
    v_b, v_w = 2 / 2, (200 / 3) / 4
    assert e.diff == pytest.approx(11.0) and e.se == pytest.approx((v_b + v_w) ** 0.5)
    assert e.df == pytest.approx((v_b + v_w) ** 2 / (v_b ** 2 / 2 + v_w ** 2 / 3))
    assert e.verdict(0.95) == '0'


def test_one_seed_rows_are_judged_by_the_default_cells_spread_until_rows_have_two(tmp_path):
    study = _study(tmp_path)
    store = _store(tmp_path, 'micro_bf16_20ep', {'1': [50], '8': [58], '2': [50, 51, 49, 50]})
    data = StudyData(study, {5: _store(tmp_path, 'micro', {}), 20: store})
    sd = (2 / 3) ** 0.5
    e = data.effect(20, study.cfg.findings[0], 'lin_mean')
    assert e.se == pytest.approx(sd * 2 ** 0.5) and e.df == 3 and e.verdict(0.95) == '+'
    # a difference with the default cell itself reads that one estimate once, not as two independent ones
    e = data.effect(20, dict(axis='decoder_depth', better='8', worse='2'), 'lin_mean')
    assert e.se == pytest.approx(sd * (1 + 1 / 4) ** 0.5) and e.df == 3


def test_spreads_that_share_seeds_are_not_taken_for_independent_ones(tmp_path):
    # no row has two seeds: depth 1 (one seed) is judged by the pool of the larger rows, which holds depth 8's
    # own seeds; Welch would count the two estimates as independent and overstate the degrees of freedom
    study = _study(tmp_path)
    store = _store(tmp_path, 'micro_bf16_20ep', {'1': [50], '8': [56, 58, 60], '2': [50, 51, 49, 50]})
    data = StudyData(study, {5: _store(tmp_path, 'micro', {}), 20: store})
    e = data.effect(20, study.cfg.findings[0], 'lin_mean')
    pooled = ((8 + 2) / (2 + 3)) ** 0.5
    assert e.se == pytest.approx((4 / 3 + pooled ** 2) ** 0.5) and e.df == 2


def test_the_default_cell_is_maes_though_another_methods_base_cell_is_a_row_too(tmp_path):
    # CAE's base cell is the default row of the CAE alignment axis; listed first, it must not stand in for
    # the default cell the report describes and judges by
    study = _study(tmp_path, STUDY.replace("rows = dict(", "rows = dict(cae_align_weight=['0', '2'], "))
    store = _store(tmp_path, 'micro', {'2': [50, 51, 52, 53]})
    _store(tmp_path, 'micro', {'2': [30, 40]}, axis='cae_align_weight', store=store)
    data = StudyData(study, {5: store, 20: _store(tmp_path / 'b', 'micro_bf16_20ep', {})})
    assert data.default_row(5).value.method == 'mae'
    assert data.spreads(5, 'lin_mean')[0] == (pytest.approx(1.29, abs=0.01), 3)


def test_a_spread_resting_on_few_seeds_asks_for_a_larger_effect():
    # the two-sided 95% Student t critical values: the spread estimated from 3 degrees of freedom is itself
    # uncertain, so 4.2 standard errors do not yet show there, but do with 13 degrees of freedom behind it
    assert critical_t(0.95, 3) == pytest.approx(3.182, abs=1e-3)
    assert critical_t(0.95, 13) == pytest.approx(2.160, abs=1e-3)
    assert critical_t(0.95, 0) is None
    assert Effect(3.0, 1.0, 1, 4, df=3).verdict(0.95) == '0'
    assert Effect(3.0, 1.0, 1, 4, df=13).verdict(0.95) == '+'
    assert Effect(-3.0, 1.0, 1, 4, df=13).verdict(0.95) == '-'
    assert Effect(3.0, None, 1, 1, df=0).verdict(0.95) == 'n'
    assert Effect(0.5, 0.0, 2, 1, df=1).verdict(0.95) == 'n'     # two seeds that tie are no evidence of no spread
    assert Effect(3.0, 1.0, 1, 4, df=13).margin(0.95) == pytest.approx(2.160, abs=1e-3)


def test_the_smallest_detectable_effect_is_the_exact_t_test_power_not_the_normal_approximation():
    # Cohen's two-sample tables (alpha 0.05 two-sided, power 0.8): an effect of 1 sd needs 17 seeds a row, one of
    # half an sd 64; the normal approximation would settle for 16 and 63
    assert detectable_effect(1.0, 17, 0.95) < 1.0 < detectable_effect(1.0, 16, 0.95)
    assert detectable_effect(1.0, 64, 0.95) < 0.5 < detectable_effect(1.0, 63, 0.95)
    # two seeds a row, their spread from those rows alone (2 degrees of freedom): 5.65 sd, not the normal's
    # 2.8; judged by a spread pooled over 12 such rows (12 df), as the study judges two-seed rows: 3.05 sd
    assert detectable_effect(1.0, 2, 0.95) == pytest.approx(5.653, abs=1e-3)
    assert detectable_effect(1.0, 2, 0.95, df=12) == pytest.approx(3.053, abs=1e-3)
    # far into the tails (99%: the noncentral t's lower tail would be NaN computed directly)
    assert detectable_effect(1.0, 2, 0.99) == pytest.approx(12.68, abs=0.01)
    assert detectable_effect(1.0, 1, 0.95) is None
    with pytest.raises(ValueError, match='power must lie between 0.05'):
        detectable_effect(1.0, 4, 0.95, power=0.05)


def test_the_schedule_study_pools_two_seed_rows_over_its_twelve_other_cells_at_every_schedule():
    # the default cell is a row of six axes and CAE's base cell of two: 17 rows, 13 distinct cells
    study = Study.load('schedule')
    data = StudyData(study, results=REPO / 'docs/results')
    assert {label: data.other_rows(label) for label in study.schedules} == {5: 12, 10: 12, 20: 12, 100: 12}


def test_the_schedule_studys_100_epoch_column_is_filled_from_a_gpu_and_never_run_on_a_cpu(tmp_path):
    study = Study.load('schedule')
    assert study.schedules[100] == 'micro_bf16_device_100ep'
    assert {step.label for step in plan(study)} == {5, 10, 20}
    stores = {100: _store(tmp_path, 'micro_bf16_device_100ep', {'1': [50, 52], '8': [56, 58]})}
    write_study_report(study, tmp_path / 'out', StudyData(study, stores, results=REPO / 'docs/results'))
    md = (tmp_path / 'out' / 'schedule_study.md').read_text()
    assert '| finding | metric | 5 ep | 10 ep | 20 ep | 100 ep | paper (800 ep) | verdict |' in md
    row = next(line for line in md.splitlines() if line.startswith('| decoder depth 8 over 1 | lin (mean-pool)'))
    assert row.split(' | ')[5].startswith('+6.00 ± ')     # 57 - 51 at 100 epochs
    assert '| 100 | micro_bf16_device_100ep | bf16 autocast, device data path |' in md


def test_a_study_states_its_confidence_as_a_probability(tmp_path):
    with pytest.raises(AblationError, match=r'confidence: 95.0 must be a probability strictly between 0 and 1'):
        _study(tmp_path, STUDY.replace('confidence = 0.95', 'confidence = 95.0'))


# Effects standing for each schedule's verdict: '+' shows (5 ± 1), '0' does not (0.5 ± 1), '-' the opposite
# shows, '?' unmeasured, 'n' measured at one seed without a spread to judge by
_AS = {'+': Effect(5.0, 1.0, 2, 2, df=10), '0': Effect(0.5, 1.0, 2, 2, df=10), '-': Effect(-5.0, 1.0, 2, 2, df=10),
       '?': Effect(None, None, 0, 0), 'n': Effect(3.0, None, 1, 1)}


@pytest.mark.parametrize('verdicts, expected', [
    (['+', '+', '+'], 'reproduces'),
    (['0', '0', '+'], 'emerges with training'),
    (['+', '0', '0'], 'shrinks'),
    (['0', '0', '0'], 'does not reproduce'),
    (['0', '0', '-'], 'does not reproduce (the opposite shows)'),
    (['-', '0', '0'], 'does not reproduce (the opposite shows)'),
    (['0', '+', '0'], 'does not reproduce (shows only in between)'),
    (['+', '-', '+'], 'inconsistent (shows at 5 ep, 20 ep; the opposite at 10 ep)'),
    (['+', '0', '-'], 'inconsistent (shows at 5 ep; the opposite at 20 ep)'),
    (['+', '?', '?'], 'so far: shows at 5 ep'),         # one schedule is no trend
    (['?', '?', '+'], 'so far: shows at 20 ep'),
    (['?', '-', '?'], 'so far: the opposite shows at 10 ep'),
    (['0', '?', '?'], 'so far: does not show at 5 ep'),
    (['?', '?', '?'], 'not measured yet'),
    (['?', '?', 'n'], 'no seed spread to judge by'),
    (['+', 'n', '+'], 'so far: reproduces'),     # a schedule without a spread does not hide the others
])
def test_the_verdict_over_schedules(verdicts, expected):
    assert trend([_AS[v] for v in verdicts], [5, 10, 20], 0.95) == expected


def test_an_effect_that_shows_at_one_end_only_shrinks_or_emerges_only_if_its_size_moved_beyond_the_noise():
    # the 20-epoch mask ratio 75% over 40%: +1.51 ± 0.29 shows at 5 epochs, +1.56 ± 0.58 on 3 df does not at 20
    # (t = 3.18): the same size, measured less precisely, is no shrinking
    held, noisy = Effect(1.51, 0.29, 4, 2, df=13.1), Effect(1.56, 0.58, 4, 1, df=3)
    assert (held.verdict(0.95), noisy.verdict(0.95)) == ('+', '0')
    assert trend([held, _AS['?'], noisy], [5, 10, 20], 0.95) == 'so far: shows at 5 ep; undecided at 20 ep'
    assert trend([noisy, _AS['?'], held], [5, 10, 20], 0.95) == 'so far: shows at 20 ep; undecided at 5 ep'
    gone = Effect(-0.2, 0.3, 4, 2, df=13.1)        # the same 5-epoch effect, at zero with a tight interval
    assert trend([held, _AS['?'], gone], [5, 10, 20], 0.95) == 'so far: shrinks'
    assert trend([gone, _AS['?'], held], [5, 10, 20], 0.95) == 'so far: emerges with training'


def test_the_report_gives_every_finding_its_effects_verdict_and_the_commands(tmp_path):
    study = _study(tmp_path, STUDY + "notes = ['seed 1 of depth 8 ran on another machine']\n")
    stores = {5: _store(tmp_path, 'micro', {'1': [50, 52], '8': [49, 51], '2': [53, 55]}),
              20: _store(tmp_path, 'micro_bf16_20ep', {'1': [50, 52], '8': [60, 62]})}
    paths = write_study_report(study, tmp_path / 'out', StudyData(study, stores))
    assert sorted(p.name for p in paths) == ['tiny_study.md', 'tiny_study.png']
    md = (tmp_path / 'out' / 'tiny_study.md').read_text()
    row = next(line for line in md.splitlines() if line.startswith('| decoder depth 8 over 1 |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[2:5] == ['-1.00 ± 1.41 (n=2,2, df 3)', '+10.00 ± 1.41 (n=2,2, df 2) **shows**',
                          'lin +8.0, ft +0.1']
    assert cells[5] == 'emerges with training'
    # each schedule's two spreads with their degrees of freedom: the default cell (depth 2) has two seeds at 5
    # epochs, too few for a spread of its own, so it is one of the pooled rows
    assert '| 5 | micro | fp32 | lin (mean-pool) -; lin - | lin (mean-pool) 1.41 (3); lin 1.41 (3) |' in md
    assert '4 effects are judged above, each at 95%: were there no effect anywhere, about 0.2 of them' in md
    assert '\n- seed 1 of depth 8 ran on another machine\n' in md      # the study's caveats, under its table
    # the default cell (decoder depth 2 here) at each schedule, on every evaluation the scale runs
    assert '| epochs | seeds | lin | lin (mean-pool) | kNN | attentive |' in md
    assert '| 5 | 2 | 44.00 ± 1.41 | 54.00 ± 1.41 | - | - |' in md
    assert '| 20 | 0 | - | - | - | - |' in md
    assert '`python tools/ablate.py --scale micro_bf16_20ep --axis decoder_depth --values 1 2 8 --seeds 2`' in md
    # what rows of 2, 4 and 8 seeds would resolve at the spreads measured (here one: sd 1.41), and their cost
    # (the default cell's 1 CPU-hour a seed); no cost at a schedule where the default cell has not run
    # (two other rows here, so two-seed rows pool 2 x 1 degrees of freedom, as two rows' own spreads would)
    assert '| 5 | lin (mean-pool) | -; 1.41 (3) | 8.0 | 3.4 | 2.1 | 2.0, 4.0, 8.0 |' in md
    assert '| 20 | lin (mean-pool) | -; 1.41 (2) | 8.0 | 3.4 | 2.1 | - |' in md
    data = StudyData(study, stores)
    data.other_rows = lambda label: 12       # with 12 rows to pool over, two seeds a row resolve 3.05 sd
    assert '| 5 | lin (mean-pool) | -; 1.41 (3) | 4.3 | 3.4 | 2.1 | 2.0, 4.0, 8.0 |' in \
        sensitivity_table(data, ('lin_mean',), 0.95)


def test_the_report_counts_the_cells_a_cpu_without_bf16_units_computed_in_float32_products(tmp_path):
    study = _study(tmp_path, STUDY.replace("20: 'micro_bf16_20ep'}",
                                           "20: 'micro_bf16_20ep', 100: 'micro_bf16_device_100ep'}"))
    stores = {5: _store(tmp_path, 'micro', {'1': [50, 52]}),
              20: _store(tmp_path, 'micro_bf16_20ep', {'1': [50, 52], '8': [60, 62]}),
              100: _store(tmp_path, 'micro_bf16_device_100ep', {'1': [50]})}
    units, none = (dict(machine='x86_64', cpus=2, model='AMD EPYC', bf16_units=has) for has in (True, False))
    for label in (5, 100):      # fp32 pretraining, and a GPU's: their host CPU computed no bf16 product there
        for record in stores[label].records().values():
            stores[label].put(dict(record, host=none if label == 100 else units,
                                   pretrain=dict(record['pretrain'], hosts=[dict(none, from_iter=0)])))
    for record in stores[20].records().values():
        if record['value'] == '1':       # seed 0 finished without bf16 units; seed 1 only began there
            hosts = [dict(none, from_iter=0), dict(units, from_iter=100)] if record['seed'] else None
            stores[20].put(dict(record, host=none if record['seed'] == 0 else units,
                                pretrain=dict(record['pretrain'], hosts=hosts)))
        else:
            stores[20].put(dict(record, host=units,
                                pretrain=dict(record['pretrain'], hosts=[dict(units, from_iter=0)])))
    write_study_report(study, tmp_path / 'out', StudyData(study, stores))
    md = (tmp_path / 'out' / 'tiny_study.md').read_text()
    assert '| 20 | micro_bf16_20ep | bf16 autocast (2 of 4 cells as float32 products: no bf16 units) |' in md
    assert '| 5 | micro | fp32 |' in md and '| 100 | micro_bf16_device_100ep | bf16 autocast, device data path |' in md


def test_a_study_takes_its_scales_and_rows_from_its_config_and_says_so_in_one_line():
    out = subprocess.run([sys.executable, 'tools/ablate.py', '--study', 'schedule', '--axis', 'method'],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].startswith('error: --study runs the scales')
    out = subprocess.run([sys.executable, 'tools/ablate.py', '--study', 'nope'], cwd=REPO, capture_output=True,
                         text=True)
    assert out.stderr.strip() == ("error: unknown study 'nope'; valid studies: schedule (or the path of a study "
                                  "config)")


def test_the_report_says_how_far_each_step_has_come(tmp_path):
    study = _study(tmp_path)
    scale = Scale.load('micro_bf16_20ep')
    store = ResultStore(tmp_path / 'store20')
    axis = get_axis('decoder_depth')
    every = {m: {'accuracy': 50.0} for m in scale.cfg.default_evaluations}
    for key, seeds, metrics in (('1', (0, 1), every), ('8', (0,), {'lin': {'accuracy': 50.0}})):
        value = axis.values(scale.context(), [key])[0]
        for seed in seeds:
            cell = make_cell(scale, axis, value, seed)
            store.put(dict(key=cell.key, scale=scale.name, axis=axis.name, value=key, seed=seed,
                           metrics=current_metrics(scale, metrics), pretrain={'cpu_seconds': 60.0}))
    stores = {5: ResultStore(tmp_path / 'store5'), 20: store}
    write_study_report(study, tmp_path / 'out', StudyData(study, stores))
    steps = [line for line in (tmp_path / 'out/tiny_study.md').read_text().splitlines() if line[:3] in
             ('1. ', '2. ', '3. ', '4. ')]
    # depth 8 seed 0 lacks evaluations: not done; the default cell (depth 2) has not run at all
    assert [line.rsplit(' (', 1)[1] for line in steps] == ['0 of 4 done)', '0 of 4 done)', '1 of 3 done)',
                                                           '2 of 6 done)']
    assert 'In all, 2 of 12 runs are done' in (tmp_path / 'out/tiny_study.md').read_text()   # 4 + 4 + 6 - 2
