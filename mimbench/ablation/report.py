"""Tables and plots from the results store, in the paper's layout, with the paper's numbers beside ours.

Nothing here trains or evaluates: :func:`axis_rows` looks each cell up in the store by its key, so the same
store always gives the same markdown (tests check it does), and a cell whose config changed since it
ran simply shows as missing.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from mimbench.ablation.axes import AXES, PAPER_ENCODER_WIDTH, AblationError, Axis, AxisValue, get_axis
from mimbench.ablation.cells import Scale, find_record, make_cell, record_weight_files
from mimbench.ablation.execute import current_eval_hashes
from mimbench.ablation.store import ResultStore
from mimbench.fileio import save_figure, write_text_atomic

METRIC_NAMES = dict(ft='ft', lin='lin', lin_mean='lin (mean-pool)', knn='kNN', att='attentive')
# Axes drawn together: the paper's Table 1a/1b are read as one comparison
GROUPS = {'decoder': ('decoder_depth', 'decoder_width')}


@dataclass
class Row:
    """One axis value's records (one per seed found). ``current``: per evaluation column, the eval hashes of
    its present recipe; a metric stored under another (an edited recipe, a raised protocol version) is not
    read, so old and new recipes never mix in a mean."""
    value: AxisValue
    records: list[dict] = field(default_factory=list)
    ours_default: bool = False
    current: dict[str, set[str]] = field(default_factory=dict)

    def _is_current(self, metric: str, entry: dict) -> bool:
        return metric not in self.current or entry.get('eval_hash') in self.current[metric]

    def values(self, metric: str) -> list[float]:
        return [r['metrics'][metric]['accuracy'] for r in self.records
                if metric in r.get('metrics', {}) and self._is_current(metric, r['metrics'][metric])]

    def outdated(self) -> int:
        """How many stored metrics of this row were computed under an earlier recipe (not read)."""
        return sum(not self._is_current(m, e) for r in self.records for m, e in r.get('metrics', {}).items())

    def mean_std(self, metric: str) -> tuple[float, float, int] | None:
        """(mean, sample std, number of seeds) of the metric over this row's records; None without any."""
        vals = self.values(metric)
        if not vals:
            return None
        return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def _seeds_in(store_records: dict, scale: str) -> list[int]:
    seeds = sorted({r['seed'] for r in store_records.values() if r and r.get('scale') == scale})
    return seeds or [0]


def axis_rows(scale: Scale, axis: Axis, store: ResultStore, values: list[str] | None = None) -> list[Row]:
    """The axis's rows (its own values, plus values of this axis found in the store) with their records."""
    all_records = store.records()
    ctx = scale.context()
    wanted = axis.values(ctx, values)
    if values is None and axis.parse is not None:
        known = {v.key for v in wanted}
        extra = sorted({r['value'] for r in all_records.values()
                        if r and r.get('axis') == axis.name and r.get('scale') == scale.name} - known)
        wanted += [axis.parse(k, ctx) for k in extra]
        if all(v.x is not None for v in wanted):
            wanted.sort(key=lambda v: v.x)
    seeds = _seeds_in(all_records, scale.name)
    base = _base_key(scale, axis)
    current = current_eval_hashes(scale)
    rows = []
    for value in wanted:
        row = Row(value, current=current)
        for seed in seeds:
            cell = make_cell(scale, axis, value, seed)
            if seed == 0 and base is not None and cell.key == base:
                row.ours_default = True
            if (record := find_record(all_records, cell)) is not None:
                row.records.append(record)
        rows.append(row)
    return rows


def _base_key(scale: Scale, axis: Axis) -> str | None:
    """Key of the scale's unchanged base config for the axis's method (seed 0): the row marked "ours"."""
    methods = {v.method for v in axis.rows(scale.context())}
    method = methods.pop() if len(methods) == 1 else 'mae'
    return make_cell(scale, axis, AxisValue('base', 'base', {}, method=method), 0).key


def _fmt(ms: tuple[float, float, int] | None, n_seeds: int) -> str:
    if ms is None:
        return '-'
    mean, std, n = ms
    text = f'{mean:.2f} ± {std:.2f}' if n > 1 else f'{mean:.2f}'
    return text + (f' (n={n})' if n < n_seeds else '')


def metric_columns(scale: Scale, rows: list[Row]) -> list[str]:
    """ft and lin always (the paper's columns), then every other evaluation the scale runs or the store has."""
    names = ['ft', 'lin'] + [n for n in scale.cfg.default_evaluations if n not in ('ft', 'lin')]
    present = {m for row in rows for r in row.records for m, entry in r.get('metrics', {}).items()
               if row._is_current(m, entry)}
    names += sorted(present - set(names))
    return [n for n in names if n in METRIC_NAMES or n in present]


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    from scipy.stats import spearmanr
    rho = spearmanr(xs, ys).statistic
    return None if math.isnan(rho) else float(rho)


def check_line(rows: list[Row], metric: str = 'lin') -> str:
    """``Check (<column>): <check_summary>``."""
    return f'Check ({METRIC_NAMES.get(metric, metric)}): {check_summary(rows, metric)}'


def check_summary(rows: list[Row], metric: str) -> str:
    """Does the paper's direction show in column ``metric``? Best rows, our spread across rows vs across seeds,
    rank agreement, as clauses joined by semicolons. Every probe column of ours is compared with the paper's
    linear probe, ``ft`` with its fine-tuning."""
    paper_metric = 'ft' if metric == 'ft' else 'lin'
    pairs = [(row, row.mean_std(metric)) for row in rows]
    ours = [(row, ms) for row, ms in pairs if ms is not None]
    if len(ours) < 2:
        return f'{len(ours)} of {len(rows)} rows measured, nothing to compare yet.'
    paper_rows = [row for row in rows if getattr(row.value.paper, paper_metric) is not None]
    parts = []
    if paper_rows:
        best_paper = max(paper_rows, key=lambda r: getattr(r.value.paper, paper_metric))
        parts.append(f'paper {paper_metric} best at {best_paper.value.label}')
    best = max(ours, key=lambda p: p[1][0])
    parts.append(f'ours best at {best[0].value.label}')
    if len(ours) < len(rows):
        parts.append(f'{len(ours)} of {len(rows)} rows measured')
    means = [ms[0] for _, ms in ours]
    parts.append(f'our rows span {max(means) - min(means):.2f} points')
    stds = [ms[1] for _, ms in ours if ms[2] > 1]
    parts.append(f'mean seed std {statistics.fmean(stds):.2f}' if stds else 'one seed (no spread yet)')
    both = [(getattr(row.value.paper, paper_metric), ms[0]) for row, ms in ours
            if getattr(row.value.paper, paper_metric)]
    rho = _spearman([p for p, _ in both], [o for _, o in both])
    if rho is not None:
        parts.append(f'rank correlation with the paper over {len(both)} rows {rho:+.2f}')
    return '; '.join(parts) + '.'


def other_checks(rows: list[Row], metrics: list[str], check_metric: str) -> list[str]:
    """The check of every other column of ours with at least two measured rows, one markdown bullet each: a
    finding may show in one probe and not another (the micro scale's [cls] and mean-pooled probes differ)."""
    lines = [f'- {METRIC_NAMES.get(m, m)}: {check_summary(rows, m)}' for m in metrics
             if m != check_metric and sum(row.mean_std(m) is not None for row in rows) >= 2]
    return ['The same check on our other columns:', '', *lines, ''] if lines else []


def _cost(rows: list[Row]) -> tuple[int, float, float]:
    seen, cpu, wall = set(), 0.0, 0.0
    for row in rows:
        for r in row.records:
            if r['key'] in seen:
                continue
            seen.add(r['key'])
            pre = r.get('pretrain') or {}
            cpu += pre.get('cpu_seconds') or 0.0
            wall += ((pre.get('wall_seconds') or 0.0) + r.get('extract_seconds', 0.0)
                     + sum(m.get('wall_time_s', 0.0) for m in r['metrics'].values()))
    return len(seen), cpu / 3600, wall / 3600


def records_not_shown(scale: Scale, store: ResultStore, rows: list[Row], axis: Axis | None = None) -> list[dict]:
    """Records of the scale (run for ``axis``, if given) that none of ``rows`` shows (see
    :func:`why_not_shown`)."""
    shown = {r['key'] for row in rows for r in row.records}
    return [r for r in store.records().values() if r and r.get('scale') == scale.name and r['key'] not in shown
            and (axis is None or r.get('axis') == axis.name)]


def why_not_shown(records: list[dict]) -> str:
    """Why stored records match no current cell: a changed config, or, for configs that read a weight file,
    a file whose content here differs from the one they ran with (a retrained tokenizer is another cell)."""
    files = sorted({path for r in records for path in record_weight_files(r)})
    one = len(records) == 1
    return ('its config changed since it ran' if one else 'their configs changed since they ran') + (
        f', or the weight file {"it" if one else "they"} read ({", ".join(files)}) has other content here'
        if files else '')


# extra column name in an axis -> (record's flops_gflops_per_img key, table header)
FLOPS_KEYS = {'encoder': 'encoder', 'model': 'forward'}
FLOPS_COLUMNS = {'encoder': 'encoder GFLOPs/img', 'model': 'model GFLOPs/img (enc + dec)'}


def axis_table(scale: Scale, axis: Axis, rows: list[Row], stale: list[dict] = (), heading: bool = True) -> str:
    """The markdown section of one axis (under a ``##`` heading unless ``heading`` is False: a file of one
    axis already carries its title)."""
    seeds = max((len(row.records) for row in rows), default=0)
    metrics = metric_columns(scale, rows)
    # FLOPs columns: the encoder's forward, and the whole model's (encoder + decoder, what the paper's 3.3x
    # counts); a ratio is only comparable to the paper's when both count the same thing
    flops_cols = [(part, label) for part, label in FLOPS_COLUMNS.items() if f'{part} FLOPs' in axis.extra_columns]
    header = [axis.column, 'default'] + [METRIC_NAMES.get(m, m) for m in metrics] + [h for _, h in flops_cols]
    header += ['paper ft', 'paper lin']
    base_flops = {}
    for row in rows:
        if row.ours_default and row.records:
            base_flops = row.records[0]['flops_gflops_per_img']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        marks = [m for m, on in (('ours', row.ours_default), ('paper', row.value.paper_default)) if on]
        cells = [row.value.label, ' + '.join(marks)] + [_fmt(row.mean_std(m), seeds) for m in metrics]
        for part, _ in flops_cols:
            flops = row.records[0]['flops_gflops_per_img'][FLOPS_KEYS[part]] if row.records else None
            base = base_flops.get(FLOPS_KEYS[part])
            cells.append('-' if flops is None else f'{flops:.4g}' + (f' ({flops / base:.1f}x)' if base else ''))
        cells += [row.value.paper.cell('ft'), row.value.paper.cell('lin')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    n_cells, cpu_h, wall_h = _cost(rows)
    c = scale.cfg
    epochs = c.pretrain_options.get('train_cfg.max_epochs')
    note = (f'Ours: {c.description}, {epochs} pretraining epochs per cell, top-1 % on the test split as '
            f'mean ± std over {seeds} seed{"s" if seeds != 1 else ""} ("n=" where fewer finished); {n_cells} '
            f'cells, {cpu_h:.2f} CPU-hours of pretraining (process time), {wall_h:.2f} hours wall-clock with '
            f'evaluation. Paper: {c.paper}, top-1 % (fine-tune / linear). "default" marks our base setting '
            f'and the paper\'s; "~" marks paper values read off a figure.')
    if stale:
        note += (f' {len(stale)} stored record{"s" if len(stale) > 1 else ""} of this axis '
                 f'{"are" if len(stale) > 1 else "is"} not shown: {why_not_shown(stale)}.')
    if outdated := sum(row.outdated() for row in rows):
        note += (f' {outdated} stored metric{"s" if outdated > 1 else ""} of these cells '
                 f'{"were" if outdated > 1 else "was"} computed under an earlier evaluation recipe and '
                 f'{"are" if outdated > 1 else "is"} not shown; the sweep re-evaluates them.')
    check_metric = scale.cfg.get('check_metric', 'lin')
    return '\n'.join([*([f'## {axis.title}', ''] if heading else []), note, '', *lines, '',
                      f'Paper: {axis.finding}', '', check_line(rows, check_metric), '',
                      *other_checks(rows, metrics, check_metric)])


def plot_rows(axis: Axis, rows: list[Row], ax_ours, ax_paper, paper_scale: float = 1.0) -> None:
    """Our metrics (mean with seed std as error bars) and the paper's ft / lin against the axis's x.
    ``paper_scale`` maps our x to the paper's (decoder widths: the paper's encoder width over ours)."""
    xs = [row.value.x for row in rows]
    for metric in ('lin', 'lin_mean', 'knn', 'att', 'ft'):
        pts = [(x, row.mean_std(metric)) for x, row in zip(xs, rows)]
        pts = [(x, ms) for x, ms in pts if ms is not None]
        if pts:
            ax_ours.errorbar([x for x, _ in pts], [ms[0] for _, ms in pts], yerr=[ms[1] for _, ms in pts],
                             marker='o', capsize=3, label=METRIC_NAMES[metric])
    paper_xs = [x * paper_scale for x in xs]
    for metric, style in (('ft', 's--'), ('lin', 'o--')):
        pts = [(x, getattr(row.value.paper, metric)) for x, row in zip(paper_xs, rows)
               if getattr(row.value.paper, metric) is not None]
        if pts:
            ax_paper.plot([x for x, _ in pts], [y for _, y in pts], style, label=f'paper {metric}')
    for ax, title, ticks in ((ax_ours, 'ours', xs), (ax_paper, 'paper (ViT-L, ImageNet-1K)', paper_xs)):
        if axis.name in ('decoder_depth', 'decoder_width'):     # doubling steps: even spacing on log2
            ax.set_xscale('log', base=2)
        ax.set_xticks(ticks, [f'{t:g}' for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(axis.plot)
        ax.set_ylabel('top-1 (%)')
        ax.set_title(f'{axis.title.split(" (")[0]}: {title}', fontsize=10)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    if not ax_paper.has_data():     # an empty frame would read as "the paper measured nothing in range"
        ax_paper.set_yticks([])
        ax_paper.set_ylabel('')
        ax_paper.text(0.5, 0.5, 'no values published for this axis', ha='center', va='center',
                      transform=ax_paper.transAxes, fontsize=9, color='0.4')


def plot_axes(items: list[tuple[Axis, list[Row]]], path: str | Path, scale: Scale | None = None) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(items), 2, figsize=(10, 3.6 * len(items)), squeeze=False)
    width = scale.context().embed_dim if scale is not None else None
    for (axis, rows), (ax_ours, ax_paper) in zip(items, axes):
        paper_scale = PAPER_ENCODER_WIDTH / width if axis.name == 'decoder_width' and width else 1.0
        plot_rows(axis, rows, ax_ours, ax_paper, paper_scale)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_report(scale: Scale, names: list[str], store: ResultStore, out_dir: str | Path,
                 values: list[str] | None = None, plots: bool = True) -> list[Path]:
    """Write ``<out_dir>/<axis>.md`` (and ``.png`` for curve axes) for each axis in ``names``; the axes of a
    group (``decoder``) go to one file. Returns the paths written."""
    out_dir = Path(out_dir)
    written = []
    for group, axis_names in _files(names):
        file_stem = _file_stem(scale, group)
        items = [(get_axis(n), axis_rows(scale, get_axis(n), store, values)) for n in axis_names]
        sections = [axis_table(scale, axis, rows, records_not_shown(scale, store, rows, axis),
                               heading=len(items) > 1)
                    for axis, rows in items]
        title = {'decoder': 'Decoder design (MAE Table 1a, 1b)'}.get(group, items[0][0].title)
        scale_arg = '' if scale.name == 'micro' else f' --scale {scale.name}'
        body = [f'# {title}', '', f'Generated by `python tools/ablate.py --report --axis {group}{scale_arg}` from '
                f'the results store; do not edit by hand.', '']
        curves = [(a, r) for a, r in items if a.plot]
        if plots and curves:
            written.append(plot_axes(curves, out_dir / f'{file_stem}.png', scale))
            body += [f'![{title}]({file_stem}.png)', '']
        md = '\n'.join(body + sections)
        written.append(write_text_atomic(out_dir / f'{file_stem}.md', md))
    return written


def status_table(scale: Scale, store: ResultStore, out_dir: str | Path | None = None) -> str:
    """Where every table of the scale stands: rows and cells finished, their cost, and the check line; the
    file column links the tables that exist in ``out_dir``."""
    metric = scale.cfg.get('check_metric', 'lin')
    seeds = int(scale.cfg.get('seeds', 1))
    scale_arg = '' if scale.name == 'micro' else f' --scale {scale.name}'
    lines = [f'# Ablation status, scale {scale.name!r}', '',
             f'Generated by `python tools/ablate.py --report{scale_arg}` from the results store; do not edit by '
             f'hand. A cell is one pretraining run and its evaluations at one seed; the default cell counts in '
             f'every table it is a row of, and once in the total. Planned: every row at {seeds} seeds. The '
             f'check is on {METRIC_NAMES.get(metric, metric)}.', '',
             '| table | file | rows measured | cells done / planned | CPU-hours | check |',
             '|---|---|---|---|---|---|']
    all_rows = []
    for name, axis in AXES.items():
        try:
            rows = axis_rows(scale, axis, store)
        except AblationError as err:   # e.g. a test scale without the method the axis needs
            lines.append(f'| {axis.title} | - | - | - | - | not available: {err} |')
            continue
        measured = sum(1 for row in rows if row.values(metric))
        done = sum(len(row.records) for row in rows)
        all_rows += rows
        _, cpu, _ = _cost(rows)
        stem = _file_stem(scale, next((g for g, members in GROUPS.items() if name in members), name))
        check = check_summary(rows, metric) if done else 'not run'
        exists = out_dir is not None and (Path(out_dir) / f'{stem}.md').is_file()
        link = f'[{stem}.md]({stem}.md)' if exists else '-'
        lines.append(f'| {axis.title} | {link} | {measured} / {len(rows)} | '
                     f'{done} / {len(rows) * seeds} | {cpu:.2f} | {check} |')
    cells, cpu_total, _ = _cost(all_rows)   # _cost counts a cell shared by several tables once
    lines += ['', f'Total: {cells} distinct cells, {cpu_total:.2f} CPU-hours of pretraining (process time).']
    hidden = records_not_shown(scale, store, all_rows)
    if hidden:
        cpu_hidden = sum((r.get('pretrain') or {}).get('cpu_seconds') or 0.0 for r in hidden) / 3600
        lines += ['', f'{len(hidden)} more stored record{"s" if len(hidden) > 1 else ""} ({cpu_hidden:.2f} '
                      f'CPU-hours) {"are" if len(hidden) > 1 else "is"} in no table: {why_not_shown(hidden)}. '
                      f'The store keeps {"them" if len(hidden) > 1 else "it"}'
                      + (f': {", ".join(sorted(r["key"] for r in hidden))}.' if len(hidden) <= 8 else '.')]
    if out_dir is not None:
        others = sorted(Path(out_dir).glob('ablation_status_*.md'))
        studies = sorted(Path(out_dir).glob('*_study.md'))
        if scale.name == 'micro' and (others or studies):
            lines += ['', 'Other scales and studies: ' + ', '.join(f'[{p.stem}]({p.name})' for p in others + studies)
                      + '.']
    lines.append('')
    return '\n'.join(lines)


def write_status(scale: Scale, store: ResultStore, out_dir: str | Path) -> Path:
    """``<out_dir>/ablation_status.md`` (other scales: ``ablation_status_<scale>.md``)."""
    stem = 'ablation_status' if scale.name == 'micro' else f'ablation_status_{scale.name}'
    return write_text_atomic(Path(out_dir) / f'{stem}.md', status_table(scale, store, out_dir))


def _file_stem(scale: Scale, group: str) -> str:
    # micro tables are the project's defaults; other scales get their own files beside them
    return group if scale.name == 'micro' else f'{group}_{scale.name}'


def _files(names: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    files, used = [], set()
    for group, members in GROUPS.items():
        if group in names or any(m in names for m in members):   # one file holds the whole group
            files.append((group, members))
            used |= set(members) | {group}
    files += [(n, (n,)) for n in names if n not in used]
    return files
