"""A study: the same ablation rows at several scales, and how each of the papers' findings moves across them.

``configs/studies/<name>.py`` names the scales (the schedule study: ``{5: 'micro', 10: ..., 20: ...}``
pretraining epochs), the rows to run at each, the order to run them in, and the findings, each a difference of
two rows of one axis (``better - worse``: positive where the paper's direction shows). Everything here reads
the scales' results stores; the cells themselves run through the ordinary sweep, one :func:`plan` step at a
time.

Each effect is judged against seed spreads of its own scale, never a row's two seeds vouching for themselves. A
row with ``OWN_SPREAD_SEEDS`` or more seeds of the metric (the default cell) has its own standard deviation;
every other row has the one pooled over the rows with two seeds (at a schedule where no row has two, the
pool of the rows with more: the default cell's). The rows' spreads are not assumed equal: at 5 epochs the
default cell's four [cls] probes spread 4.39 points while twelve two-seed rows pool to 1.09 (a two-sided F
test puts that at p = 0.0003), so one pool over both misjudged every comparison. The standard error of
``better - worse`` is ``sqrt(s_b^2/n_b + s_w^2/n_w)`` and its degrees of freedom Welch-Satterthwaite's (the pool's own
when both rows read the same pool). An effect "shows" beyond the two-sided Student t critical value at the
study's ``confidence`` for those degrees of freedom: with few seeds behind a spread (3 degrees of freedom:
t = 3.18 at 95%) the spread itself is uncertain, and a fixed 2 standard errors would call chance differences
effects.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from mmengine.config import Config
from scipy import optimize, stats

from mimbench.ablation.axes import AblationError, get_axis
from mimbench.ablation.cells import Scale, load_named_config, make_cell
from mimbench.paths import configs_dir
from mimbench.ablation.report import METRIC_NAMES, Row, _cost, axis_rows
from mimbench.ablation.store import ResultStore, pretrain_hosts
from mimbench.fileio import save_figure, write_text_atomic

SPREAD_AXIS, SPREAD_VALUE = 'method', 'mae'     # the default cell, reached through the method axis


@dataclass
class Step:
    """One sweep: ``values`` of ``axis`` at ``scale``, seeds ``0 .. seeds - 1``."""
    label: int            # the study's name for the scale (epochs)
    scale: str
    axis: str
    values: list[str]
    seeds: int
    finetune: bool = False    # also the ft column

    @property
    def command(self) -> str:
        scale = '' if self.scale == 'micro' else f' --scale {self.scale}'
        return (f'python tools/ablate.py{scale} --axis {self.axis} --values {" ".join(self.values)} '
                f'--seeds {self.seeds}' + (' --finetune' if self.finetune else ''))


@dataclass
class Study:
    name: str
    cfg: Config

    @classmethod
    def load(cls, name_or_path: str) -> Study:
        cfg = load_named_config(name_or_path, configs_dir() / 'studies', 'study', 'studies')
        study = cls(cfg.study, cfg)
        for label, scale in study.schedules.items():
            Scale.load(scale)
        for axis in cfg.rows:
            get_axis(axis)
        if not 0 < float(cfg.get('confidence', 0)) < 1:
            raise AblationError(f'confidence: {cfg.get("confidence")!r} must be a probability strictly between '
                                f'0 and 1 (e.g. 0.95)')
        if (ft := cfg.get('finetune')) and not set(ft['values']) <= set(cfg.rows.get(ft['axis'], [])):
            raise AblationError(f'finetune: values {ft["values"]} must be among the study\'s {ft["axis"]} rows '
                                f'{cfg.rows.get(ft["axis"], [])}')
        for f in cfg.findings:
            values = cfg.rows.get(f['axis'], [])
            if not {f['better'], f['worse']} <= set(values):
                raise AblationError(f'finding {f["name"]!r}: rows {f["better"]!r} and {f["worse"]!r} must '
                                    f'both be among the study\'s {f["axis"]} rows {values}')
        return study

    @property
    def schedules(self) -> dict[int, str]:
        return {int(k): v for k, v in self.cfg.schedules.items()}

    def scale(self, label: int) -> Scale:
        return Scale.load(self.schedules[label])


def plan(study: Study) -> list[Step]:
    """The sweeps of the study in its ``order``; each runs only what its store lacks.

    The cells of a fine-tuning step are fine-tuned by the step that first pretrains them, in the same job: a
    work dir does not outlive its machine, and a cell whose work dir is gone cannot be fine-tuned later. A
    step of more seeds than the fine-tuning's is preceded by the fine-tuning's seeds of those values."""
    ft = study.cfg.get('finetune')
    tuned_at = {int(label) for label, seeds in study.cfg.order if seeds == 'finetune'} if ft else set()
    planned: set[tuple[int, str]] = set()      # (schedule, value) whose fine-tuning a step already runs
    steps: list[Step] = []

    def add(label: int, axis: str, values: list[str], seeds: int, finetune: bool = False) -> None:
        scale = study.schedules[label]
        tuned = [v for v in values if label in tuned_at and axis == ft['axis'] and v in ft['values']]
        if finetune or any((label, v) not in planned for v in tuned):
            first = values if finetune else tuned
            planned.update((label, v) for v in first)
            if finetune or seeds <= int(ft['seeds']):
                steps.append(Step(label, scale, axis, first, seeds, finetune=True))
                values = [v for v in values if v not in first]
            else:
                steps.append(Step(label, scale, axis, first, int(ft['seeds']), finetune=True))
        if values:
            steps.append(Step(label, scale, axis, values, seeds))

    for label, seeds in study.cfg.order:
        label = int(label)
        if seeds == 'spread':
            add(label, SPREAD_AXIS, [SPREAD_VALUE], int(study.cfg.spread_seeds))
        elif seeds == 'finetune':
            add(label, ft['axis'], list(ft['values']), int(ft['seeds']), finetune=True)
        else:
            n = int(study.cfg.row_seeds[label]) if seeds == 'rows' else int(seeds)
            for axis, values in study.cfg.rows.items():
                add(label, axis, list(values), n)
    return steps


def step_progress(step: Step, store: ResultStore) -> dict[tuple[str, bool], bool]:
    """The step's cells, ``(key, fine-tuned)`` -> whether the record holds every evaluation the step runs."""
    from mimbench.ablation.cells import expand
    from mimbench.ablation.execute import current_eval_hashes
    scale = Scale.load(step.scale)
    cells = expand(scale, [step.axis], step.seeds, step.values)
    current = current_eval_hashes(scale)      # as the tables read them: the same on every machine
    evaluations = list(scale.cfg.default_evaluations) + (['ft'] if step.finetune else [])
    records = store.records()

    def done(record: dict | None) -> bool:
        metrics = (record or {}).get('metrics', {})
        return all(metrics.get(name, {}).get('eval_hash') in current[name] for name in evaluations)
    return {(c.key, step.finetune): done(records.get(c.key)) for c in cells}


OWN_SPREAD_SEEDS = 3      # a row with this many seeds of a metric is judged by its own spread


def critical_t(confidence: float, df: float) -> float | None:
    """The two-sided Student t critical value at ``confidence`` for ``df`` degrees of freedom; None at 0."""
    return float(stats.t.ppf(0.5 + confidence / 2, df)) if df > 0 else None


@dataclass
class Spread:
    """A seed standard deviation and its degrees of freedom; ``source`` names what it was estimated from (two
    rows reading the same source share one estimate), ``rows`` the cells (keys) behind it."""
    sd: float | None
    df: int
    source: str = ''
    rows: frozenset = frozenset()


@dataclass
class Effect:
    """``better - worse`` on one metric at one schedule, with the standard error of that difference and its
    (Welch-Satterthwaite) degrees of freedom."""
    diff: float | None
    se: float | None
    n_better: int
    n_worse: int
    df: float = 0

    def margin(self, confidence: float) -> float | None:
        """Half the width of the ``confidence`` interval of the difference: t critical value x se."""
        t = critical_t(confidence, self.df)
        # a spread of exactly 0 (two seeds that tie to the test set's 0.01%) is no evidence of none: unjudged
        return t * self.se if t is not None and self.se else None

    def verdict(self, confidence: float) -> str:
        """'+' (the paper's direction, beyond the ``confidence`` t margin), '-' (the opposite), '0' (inside),
        '?' (unmeasured), 'n' (measured, but no row of its schedule has two seeds of this metric to judge by, or
        those it has agree exactly)."""
        if self.diff is None:
            return '?'
        margin = self.margin(confidence)
        if margin is None:
            return 'n'
        return '+' if self.diff > margin else '-' if self.diff < -margin else '0'

    def text(self) -> str:
        if self.diff is None:
            return '-'
        se = f' ± {self.se:.2f}' if self.se is not None else ''
        df = f', df {self.df:.3g}' if self.se is not None and self.df else ''
        return f'{self.diff:+.2f}{se} (n={self.n_better},{self.n_worse}{df})'


def _distinct(rows: list[Row]) -> list[Row]:
    """``rows`` with each set of cells once: the default cell is a row of several axes."""
    out, seen = [], set()
    for row in rows:
        keys = tuple(sorted(r['key'] for r in row.records))
        if keys not in seen:
            seen.add(keys)
            out.append(row)
    return out


def pooled_sd(rows: list[Row], metric: str, seeds: range = range(2, 1 << 30)) -> tuple[float | None, int]:
    """Standard deviation pooled over the rows whose number of seeds of ``metric`` is in ``seeds`` (two or
    more): sqrt(sum of squared deviations / df); returns (sd, degrees of freedom)."""
    ss = df = 0
    for row in _distinct(rows):
        vals = row.values(metric)
        if len(vals) > 1 and len(vals) in seeds:
            ss += statistics.variance(vals) * (len(vals) - 1)
            df += len(vals) - 1
    return (math.sqrt(ss / df) if df else None), df


def _cells(rows: list[Row]) -> frozenset:
    return frozenset(r['key'] for row in rows for r in row.records)


def own_spread(row: Row, metric: str) -> Spread | None:
    """``row``'s own spread of ``metric`` when it has ``OWN_SPREAD_SEEDS`` seeds or more, else None."""
    if len(vals := row.values(metric)) < OWN_SPREAD_SEEDS:
        return None
    return Spread(statistics.stdev(vals), len(vals) - 1, 'own:' + ','.join(sorted(_cells([row]))), _cells([row]))


def row_spread(rows: list[Row], row: Row, metric: str) -> Spread:
    """The spread ``row`` is judged by among its schedule's ``rows``: its own with ``OWN_SPREAD_SEEDS`` seeds or
    more; else the pool of the rows with two seeds, or where none has two, of the rows with more."""
    if (own := own_spread(row, metric)) is not None:
        return own
    distinct = _distinct(rows)
    pairs = [r for r in distinct if 2 <= len(r.values(metric)) < OWN_SPREAD_SEEDS]
    larger = [r for r in distinct if len(r.values(metric)) >= OWN_SPREAD_SEEDS]
    if len(larger) == 1 and not pairs:   # that row's own estimate: a difference with it reads one spread, not two
        return own_spread(larger[0], metric)
    pool = pairs or larger
    sd, df = pooled_sd(pool, metric)
    return Spread(sd, df, 'pool of pairs' if pairs else 'pool of larger rows', _cells(pool))


def difference_se(better: Spread, n_better: int, worse: Spread, n_worse: int) -> tuple[float | None, float]:
    """Standard error of a difference of two means and its degrees of freedom (Welch-Satterthwaite; the one
    estimate's when both spreads are the same estimate)."""
    if better.sd is None or worse.sd is None:
        return None, 0
    v_b, v_w = better.sd ** 2 / n_better, worse.sd ** 2 / n_worse
    se = math.sqrt(v_b + v_w)
    if better.source == worse.source:
        return se, better.df
    if better.rows & worse.rows:      # estimates that share seeds are not independent: Welch would overstate df
        return se, min(better.df, worse.df)
    return se, welch_df(v_b, better.df, v_w, worse.df)


def welch_df(v1: float, df1: float, v2: float, df2: float) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of two independent variance estimates ``v1`` and ``v2``
    resting on ``df1`` and ``df2``: 0 where either rests on none, the smaller df where the formula has nothing to
    weigh (both variances 0)."""
    if not df1 or not df2:
        return 0.0
    denominator = v1 ** 2 / df1 + v2 ** 2 / df2
    return (v1 + v2) ** 2 / denominator if denominator else min(df1, df2)


def detectable_effect(sd: float, seeds: int, confidence: float, power: float = 0.8,
                      df: float | None = None) -> float | None:
    """The smallest true difference of two rows of ``seeds`` seeds each, seed standard deviation ``sd``, that a
    two-sided Student t test at ``confidence`` finds with probability ``power``, its spread resting on ``df``
    degrees of freedom (default 2 (seeds - 1): estimated from the two rows). Exact, through the noncentral t.
    None below two seeds."""
    if seeds < 2:
        return None
    if not 1 - confidence < power < 1:
        raise ValueError(f'power must lie between {1 - confidence:g} (the false-alarm rate) and 1, got {power}')
    df = 2 * (seeds - 1) if df is None else df
    se, t = sd * math.sqrt(2 / seeds), critical_t(confidence, df)

    def missed(ncp: float) -> float:
        # the lower tail as the upper tail of the mirrored distribution: scipy's nct.cdf far below its
        # noncentrality turns NaN (ncp ~ 8 at 2 df), its sf does not
        return stats.nct.sf(t, df, ncp) + stats.nct.sf(t, df, -ncp) - power
    high = 4.0
    while missed(high) < 0:
        high *= 2
    return float(optimize.brentq(missed, 0.0, high)) * se


SENSITIVITY_SEEDS = (2, 4, 8)      # seeds a row, for the table of what a study of this size can resolve


class StudyData:
    """The study's rows at every schedule, read once from the stores: ``stores`` by schedule, else each scale's
    store under ``results`` (``<results>/ablation/<scale>``, as tools/ablate.py keeps them)."""

    def __init__(self, study: Study, stores: dict[int, ResultStore] | None = None,
                 results: str | Path = 'docs/results'):
        self.study = study
        self.rows: dict[int, dict[str, list[Row]]] = {}
        self.stores: dict[int, ResultStore] = {}
        for label, scale_name in study.schedules.items():
            scale = Scale.load(scale_name)
            store = (stores or {}).get(label) or ResultStore(Path(results) / 'ablation' / scale_name)
            self.stores[label] = store
            self.rows[label] = {axis: axis_rows(scale, get_axis(axis), store, list(values))
                                for axis, values in study.cfg.rows.items()}

    def row(self, label: int, axis: str, value: str) -> Row:
        return next(r for r in self.rows[label][axis] if r.value.key == value)

    def all_rows(self, label: int) -> list[Row]:
        return [row for rows in self.rows[label].values() for row in rows]

    def default_row(self, label: int) -> Row | None:
        """The scale's default MAE cell: a row of every axis whose value is the default (the CAE base cell is
        the default row of CAE's own axes, not this one)."""
        return next((row for row in self.all_rows(label) if row.ours_default and row.value.method == 'mae'), None)

    def spreads(self, label: int, metric: str) -> tuple[tuple[float | None, int], tuple[float | None, int]]:
        """The two kinds of spread at the schedule: the default cell's own, and the pool of the rows with two
        seeds; each (sd, degrees of freedom)."""
        default = self.default_row(label)
        own = own_spread(default, metric) if default else None
        return ((own.sd, own.df) if own else (None, 0)), pooled_sd(self.all_rows(label), metric,
                                                                   range(2, OWN_SPREAD_SEEDS))

    def effect(self, label: int, finding: dict, metric: str) -> Effect:
        rows = [self.row(label, finding['axis'], finding[k]) for k in ('better', 'worse')]
        better, worse = (row.values(metric) for row in rows)
        if not better or not worse:
            return Effect(None, None, len(better), len(worse))
        spread_b, spread_w = (row_spread(self.all_rows(label), row, metric) for row in rows)
        se, df = difference_se(spread_b, len(better), spread_w, len(worse))
        return Effect(statistics.fmean(better) - statistics.fmean(worse), se, len(better), len(worse), df)

    def other_rows(self, label: int) -> int:
        """How many distinct cells besides the default cell the study's rows at the schedule are (the default
        cell and CAE's base cell are rows of several axes): the rows a pooled spread would pool over."""
        scale = self.study.scale(label)
        keys = {make_cell(scale, get_axis(axis), value, 0).key
                for axis, values in self.study.cfg.rows.items()
                for value in get_axis(axis).values(scale.context(), list(values))}
        default = self.default_row(label)
        return len(keys) - (1 if default is not None else 0)

    def default_cell_hours(self, label: int) -> float | None:
        """Median CPU-hours of pretraining of the default cell's seeds at the schedule (None before one ran)."""
        row = self.default_row(label)
        hours = [r['pretrain']['cpu_seconds'] / 3600 for r in (row.records if row else [])
                 if (r.get('pretrain') or {}).get('cpu_seconds')]
        return statistics.median(hours) if hours else None

    def cost(self, label: int) -> tuple[int, float]:
        cells, cpu, _ = _cost(self.all_rows(label))
        return cells, cpu

    def float32_product_cells(self, label: int) -> int:
        """How many distinct cells at the schedule computed bf16 products, in part or whole, as float32 products
        (:class:`~mimbench.engine.precision.Float32Products`): evaluated (the probes compute in bf16 at every
        micro scale) on a CPU without bf16 units, or, at a bf16 schedule, pretrained on one for a stretch
        (``pretrain.hosts``). None at a schedule run on a GPU (``device_data``), whose host CPU computed no
        product."""
        scale = self.study.scale(label)
        if scale.cfg.get('device_data'):
            return 0

        def without_units(record: dict) -> bool:
            hosts = [record.get('host') or {}]
            if scale.cfg.get('amp'):
                hosts += pretrain_hosts(record)
            return any(host.get('bf16_units') is False for host in hosts)
        return len({r['key'] for row in self.all_rows(label) for r in row.records if without_units(r)})


def change(earlier: Effect, later: Effect, confidence: float) -> str:
    """Whether an effect moved between two schedules: '+' (``later - earlier`` beyond its ``confidence``
    interval), '-' (below it), '0' (inside: the two agree as far as the seeds can tell), 'n' (no spread). The
    schedules' cells and spreads are separate, so the variances add (Welch-Satterthwaite degrees of freedom)."""
    if earlier.diff is None or later.diff is None or not earlier.se or not later.se \
            or not earlier.df or not later.df:
        return 'n'
    va, vb = earlier.se ** 2, later.se ** 2
    margin = critical_t(confidence, welch_df(va, earlier.df, vb, later.df)) * math.sqrt(va + vb)
    moved = later.diff - earlier.diff
    return '+' if moved > margin else '-' if moved < -margin else '0'


def trend(effects: list[Effect], labels: list[int], confidence: float) -> str:
    """The verdict over schedules (``labels``, shortest first) from each schedule's effect, judged '+', '0',
    '-' or '?' (unmeasured) by :meth:`Effect.verdict`: reproduces (shows at the shortest and the longest
    judged), emerges with training (shows only at the longest, and is larger there than at the shortest beyond
    the seeds' noise), shrinks (shows at the shortest, not the longest, and is smaller there beyond the noise),
    does not reproduce (nowhere; "the opposite shows" where a schedule shows the other way), inconsistent
    (shows one way at one schedule and the other way at another). Where an effect shows at one end only and
    its change between the two ends lies inside that change's own interval (:func:`change`), no trend is
    claimed: "shows at 5 ep; undecided at 20 ep". One judged schedule is no trend: "shows at N ep". Prefixed
    "so far:" while a schedule is unmeasured or has no seed spread to judge by ('n', a metric run at one seed);
    "no seed spread to judge by" when no schedule can be judged."""
    verdicts = [e.verdict(confidence) for e in effects]
    known = [(v, label, e) for v, label, e in zip(verdicts, labels, effects) if v not in ('?', 'n')]
    if not known:
        return 'no seed spread to judge by' if 'n' in verdicts else 'not measured yet'
    prefix = 'so far: ' if len(known) < len(verdicts) else ''
    signs = [v for v, _, _ in known]
    if '+' in signs and '-' in signs:
        return prefix + 'inconsistent (shows at ' + ', '.join(f'{label} ep' for v, label, _ in known if v == '+') \
            + '; the opposite at ' + ', '.join(f'{label} ep' for v, label, _ in known if v == '-') + ')'
    if len(known) == 1:
        (v, label, _), = known
        return prefix + {'+': 'shows', '-': 'the opposite shows', '0': 'does not show'}[v] + f' at {label} ep'
    (first, first_label, first_effect), (last, last_label, last_effect) = known[0], known[-1]
    if first == '+' and last == '+':
        return prefix + 'reproduces'
    if first == '+' or last == '+':
        moved = change(first_effect, last_effect, confidence)
        if last == '+' and moved == '+':
            return prefix + 'emerges with training'
        if first == '+' and moved == '-':
            return prefix + 'shrinks'
        shown, other = (first_label, last_label) if first == '+' else (last_label, first_label)
        return prefix + f'shows at {shown} ep; undecided at {other} ep'
    if '+' in signs:
        return prefix + 'does not reproduce (shows only in between)'
    return prefix + ('does not reproduce (the opposite shows)' if '-' in signs else 'does not reproduce')


def paper_effect(finding: dict, scale: Scale) -> str:
    """The paper's ``better - worse`` from the axis's paper numbers (lin and ft where both rows have them)."""
    axis = get_axis(finding['axis'])
    values = {v.key: v for v in axis.rows(scale.context())}
    b, w = values[finding['better']].paper, values[finding['worse']].paper
    parts = [f'{metric} {getattr(b, metric) - getattr(w, metric):+.1f}' for metric in ('lin', 'ft')
             if getattr(b, metric) is not None and getattr(w, metric) is not None]
    return ', '.join(parts) or finding.get('paper', 'no number published')


def finding_metrics(study: Study, finding: dict, metrics: tuple[str, ...]) -> tuple[str, ...]:
    """``metrics``, plus the ft column for a finding on the axis the study fine-tunes."""
    ft = study.cfg.get('finetune')
    return metrics + ('ft',) if ft and finding['axis'] == ft['axis'] else metrics


def summary_table(data: StudyData, metrics: tuple[str, ...]) -> tuple[list[str], int]:
    """The table ``finding | metric | <effect per schedule> | paper | verdict``, and how many effects in it
    were judged (a '+', '0' or '-')."""
    study = data.study
    judged = 0
    labels = sorted(study.schedules)
    confidence = float(study.cfg.confidence)
    head = ['finding', 'metric', *[f'{e} ep' for e in labels], 'paper (800 ep)', 'verdict']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for finding in study.cfg.findings:
        for i, metric in enumerate(finding_metrics(study, finding, metrics)):
            effects = [data.effect(label, finding, metric) for label in labels]
            verdicts = [e.verdict(confidence) for e in effects]
            judged += sum(v in '+0-' for v in verdicts)
            cells = [f'{e.text()} {_MARK[v]}'.strip() for e, v in zip(effects, verdicts)]
            name = finding['name'] if i == 0 else ''
            paper = paper_effect(finding, study.scale(labels[0])) if i == 0 else ''
            lines.append(f'| {name} | {METRIC_NAMES.get(metric, metric)} | ' + ' | '.join(cells)
                         + f' | {paper} | {trend(effects, labels, confidence)} |')
    return lines, judged


_MARK = {'+': '**shows**', '-': '**opposite**', '0': '', '?': '', 'n': ''}


def plot_study(data: StudyData, metrics: tuple[str, ...], path: str | Path) -> Path:
    """One panel per finding: the effect (points) with its confidence interval (t margin) against epochs, per
    metric."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    study = data.study
    findings = study.cfg.findings
    labels = sorted(study.schedules)
    confidence = float(study.cfg.confidence)
    cols = 4
    nrows = math.ceil(len(findings) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows), squeeze=False)
    for ax, finding in zip(axes.flat, findings):
        shown = finding_metrics(study, finding, metrics)
        for k, metric in enumerate(shown):
            xs, ys, errs = [], [], []
            for label in labels:
                e = data.effect(label, finding, metric)
                if e.diff is not None:
                    xs.append(label * (1 + 0.04 * (k - (len(shown) - 1) / 2)))
                    ys.append(e.diff)
                    errs.append(e.margin(confidence))
            if xs:
                color = ax.plot(xs, ys, '-', lw=1, label=METRIC_NAMES.get(metric, metric))[0].get_color()
                judged = [i for i, err in enumerate(errs) if err is not None]
                ax.errorbar([xs[i] for i in judged], [ys[i] for i in judged], yerr=[errs[i] for i in judged],
                            fmt='o', color=color, capsize=3)
                # no spread to judge by (one seed): a hollow point, not a bar of zero width that reads as exact
                ax.plot([x for x, err in zip(xs, errs) if err is None], [y for y, err in zip(ys, errs) if err is None],
                        'o', mfc='none', color=color)
        if len(shown) > len(metrics) and ax.get_legend_handles_labels()[0]:   # panels with an ft line say so
            ax.legend(fontsize=7)
        ax.axhline(0, color='grey', lw=0.8)
        ax.set_xscale('log')
        ax.minorticks_off()                  # a log axis labels minor ticks (6x10^0) otherwise
        ax.set_xlim(min(labels) / 1.25, max(labels) * 1.25)    # points at the ends stay inside
        ax.set_xticks(labels)
        ax.set_xticklabels([str(label) for label in labels])
        ax.set_title(finding['name'], fontsize=9)
        ax.set_xlabel('pretraining epochs', fontsize=8)
        ax.set_ylabel('better - worse (points)', fontsize=8)
    for ax in list(axes.flat)[len(findings):]:
        ax.axis('off')
    if axes.flat[0].get_legend_handles_labels()[0]:     # nothing measured yet: no legend to draw
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(f'{study.cfg.title}\n(bars: {confidence:.0%} confidence interval of the difference; hollow: no '
                 f'seed spread to judge by)', fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def default_cell_table(data: StudyData) -> list[str]:
    """The default cell's accuracy at each schedule, mean ± sample sd over its seeds, on every evaluation its
    scale runs: how much a longer schedule buys before any row is compared."""
    labels = sorted(data.study.schedules)
    metrics = list(dict.fromkeys(m for label in labels for m in data.study.scale(label).cfg.default_evaluations))
    lines = ['| epochs | seeds | ' + ' | '.join(METRIC_NAMES.get(m, m) for m in metrics) + ' |',
             '|' + '---|' * (len(metrics) + 2)]
    for label in labels:
        row = data.default_row(label)
        stats = [row.mean_std(m) if row else None for m in metrics]
        seeds = max((s[2] for s in stats if s), default=0)
        cells = [f'{s[0]:.2f} ± {s[1]:.2f}' if s and s[2] > 1 else f'{s[0]:.2f}' if s else '-' for s in stats]
        lines.append(f'| {label} | {seeds} | ' + ' | '.join(cells) + ' |')
    return lines


def sensitivity_table(data: StudyData, metrics: tuple[str, ...], confidence: float) -> list[str]:
    """The report's table of what the study can resolve, as markdown lines: per schedule and metric, the smallest
    effect a comparison of two rows of n seeds each would find 4 times in 5 (:func:`detectable_effect`) for each
    spread the schedule has measured, judged as the study judges such rows (below ``OWN_SPREAD_SEEDS`` seeds by
    the spread pooled over the schedule's other rows, each at n seeds; from there on by their own), and what
    such a row of MAE cells costs."""
    labels = sorted(data.study.schedules)
    head = ' | '.join(f'{n} seeds a row' for n in SENSITIVITY_SEEDS)
    lines = [f'| epochs | metric | seed sd: default cell; other rows pooled | {head} | CPU-hours of a row of '
             f'{", ".join(map(str, SENSITIVITY_SEEDS))} MAE cells |', '|' + '---|' * (len(SENSITIVITY_SEEDS) + 4)]
    for label in labels:
        hours = data.default_cell_hours(label)
        cost = ', '.join(f'{n * hours:.1f}' for n in SENSITIVITY_SEEDS) if hours else '-'
        rows = data.other_rows(label)
        for metric in metrics:
            spreads = data.spreads(label, metric)
            sds = [sd for sd, _ in spreads if sd]
            known = '; '.join(f'{sd:.2f} ({df})' if sd is not None else '-' for sd, df in spreads)
            cells = []
            for n in SENSITIVITY_SEEDS:
                df = rows * (n - 1) if n < OWN_SPREAD_SEEDS else 2 * (n - 1)
                found = sorted(detectable_effect(sd, n, confidence, df=df) for sd in sds)
                cells.append('-' if not found else f'{found[0]:.1f}' if len(found) == 1 or
                             f'{found[0]:.1f}' == f'{found[-1]:.1f}' else f'{found[0]:.1f}-{found[-1]:.1f}')
            lines.append(f'| {label} | {METRIC_NAMES.get(metric, metric)} | {known} | {" | ".join(cells)} | {cost} |')
    return lines


def write_study_report(study: Study, out_dir: str | Path, data: StudyData | None = None) -> list[Path]:
    """``<out_dir>/<study>_study.md`` and ``.png`` from the stores. Returns the paths written."""
    out_dir = Path(out_dir)
    data = data or StudyData(study, results=out_dir)
    scale0 = study.scale(min(study.schedules))
    check = scale0.cfg.get('check_metric', 'lin')
    metrics = tuple(dict.fromkeys((check, 'lin')))
    stem = f'{study.name}_study'
    labels = sorted(study.schedules)
    confidence = float(study.cfg.confidence)
    lines = [f'# {study.cfg.title}', '',
             f'Generated by `python tools/ablate.py --study {study.name} --report` from the results stores; do '
             f'not edit by hand. Each entry is a finding\'s effect, better row minus worse row in accuracy '
             f'points, ± one standard error of that difference. A row is judged by its own seed spread when it '
             f'has {OWN_SPREAD_SEEDS} or more seeds (the default cell runs {study.cfg.spread_seeds} at every '
             f'schedule), every other row by the spread pooled over the rows with two seeds (where none has two '
             f'yet, by the default cell\'s), both listed under Schedules; the two are not assumed equal. '
             f'**shows**: the {confidence:.0%} confidence interval of the difference (± t x standard error, t the '
             f'two-sided Student critical value for its Welch-Satterthwaite degrees of freedom) lies wholly on '
             f'the paper\'s side of zero; **opposite**: wholly on the other side. Verdicts read the check metric '
             f'({METRIC_NAMES.get(check, check)}) first row of each finding and the [cls] linear probe '
             f'(the paper\'s protocol) second. n = seeds of the better and the worse row. Over schedules: '
             f'"reproduces" shows at the shortest and longest judged schedule; "emerges with training" and '
             f'"shrinks" show at one end only and the effect\'s size moved between the ends beyond the interval of '
             f'that change; where it did not, "shows at 5 ep; undecided at 20 ep".', '',
             f'![effects against pretraining epochs]({stem}.png)', '']
    table, judged = summary_table(data, metrics)
    lines += table
    lines += ['', f'{judged} effects are judged above, each at {confidence:.0%}: were there no effect anywhere, about '
                  f'{judged * (1 - confidence):.1f} of them would still read **shows** or **opposite** by chance (on '
                  f'average: effects that share a row are not independent, so the count varies more than that). A '
                  f'verdict that rests on one schedule is weaker evidence than one that holds at several.']
    if notes := list(study.cfg.get('notes', [])):
        lines += ['', 'Read with these caveats (the study config\'s `notes`):', '', *[f'- {note}' for note in notes]]
    lines += ['', '## The default cell at each schedule', '',
              'The cell every row shares, accuracy in % (mean ± sample standard deviation over seeds):', '']
    lines += default_cell_table(data)
    lines += ['', '## Schedules', '',
              '| epochs | scale | precision | seed sd, default cell (df) | seed sd, other rows pooled (df) | cells '
              '| CPU-hours |', '|---|---|---|---|---|---|---|']
    total_cells, total_cpu = 0, 0.0
    for label in labels:
        scale = study.scale(label)
        kinds = ([], [])
        for metric in metrics:
            for texts, (sd, df) in zip(kinds, data.spreads(label, metric)):
                texts.append(f'{METRIC_NAMES.get(metric, metric)} ' + (f'{sd:.2f} ({df})' if sd is not None else '-'))
        cells, cpu = data.cost(label)
        total_cells, total_cpu = total_cells + cells, total_cpu + cpu
        precision = ('bf16 autocast' if scale.cfg.get('amp') else 'fp32') + \
            (', device data path' if scale.cfg.get('device_data') else '')
        if products := data.float32_product_cells(label):
            precision += f' ({products} of {cells} cells as float32 products: no bf16 units)'
        lines.append(f'| {label} | {scale.name} | {precision} | {"; ".join(kinds[0])} | {"; ".join(kinds[1])} '
                     f'| {cells} | {cpu:.2f} |')
    lines += ['', f'Total: {total_cells} cells, {total_cpu:.2f} CPU-hours of pretraining (process time).', '',
              '## What a study of this size can resolve', '',
              f'The smallest true effect, in accuracy points, that a comparison of two rows of n seeds each finds '
              f'(**shows** at {confidence:.0%}) four times in five, were each row\'s seed spread the one measured '
              f'here (a range where the default cell and the pooled other rows disagree), judged as this report '
              f'judges: rows of fewer than {OWN_SPREAD_SEEDS} seeds by the spread pooled over the schedule\'s other '
              f'rows, all at n seeds, larger rows by their own spreads (2 (n - 1) degrees of freedom). The spreads '
              f'rest on few seeds themselves (their degrees of freedom in brackets), so read these as rough sizes. '
              f'Set it beside the papers\' effects and the table above: an effect below it that reads "does not '
              f'show" is unresolved, not absent. CPU-hours are the default cell\'s median pretraining, this '
              f'project\'s 2-core machines, per row (CAE and BEiT-style cells cost about 3 times as much).', '']
    lines += sensitivity_table(data, metrics, confidence)
    lines += ['',
              '## How it runs', '', f'`python tools/ablate.py --study {study.name}` runs these sweeps in order; '
              'each skips the cells its store holds and resumes an interrupted one from its last checkpoint '
              '(done: cells whose record holds every evaluation the step runs):', '']
    every: dict[tuple[str, bool], bool] = {}
    for i, step in enumerate(plan(study), 1):
        cells = step_progress(step, data.stores[step.label])
        every.update(cells)
        lines.append(f'{i}. `{step.command}` ({sum(cells.values())} of {len(cells)} done)')
    lines += ['', f'In all, {sum(every.values())} of {len(every)} runs are done (a cell several steps share counts '
                  f'once; a fine-tuning counts apart from its cell).']
    lines.append('')
    written = [plot_study(data, metrics, out_dir / f'{stem}.png')]
    written.append(write_text_atomic(out_dir / f'{stem}.md', '\n'.join(lines)))
    return written
