"""Training curves from a run's logged scalars."""
from __future__ import annotations

import json
from pathlib import Path

from mimbench.fileio import save_figure


def find_scalars(work_dir: str | Path) -> Path:
    """The newest ``<timestamp>/vis_data/scalars.json`` that mmengine's LocalVisBackend wrote in ``work_dir``.

    A resumed run writes a new timestamped folder; curves should be read from all of them, oldest first:
    see :func:`read_scalars`.
    """
    files = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir}: is it a training work dir?')
    return files[-1]


def read_scalars(work_dir: str | Path) -> list[dict]:
    """Every logged training record of a work dir, across resumes, one dict per logging step, by iteration.

    When a run was resumed, later records of the same iteration replace earlier ones.
    """
    find_scalars(work_dir)   # a work dir without any scalars file is named as such, not as "no records"
    by_iter: dict[int, dict] = {}
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record and 'iter' in record:
                by_iter[record['iter']] = record
    if not by_iter:
        raise FileNotFoundError(f'no training records with a loss under {work_dir}')
    return [by_iter[i] for i in sorted(by_iter)]


def plot_curves(records: list[dict], out: str | Path, title: str = '', keys: tuple[str, ...] = ('loss',)) -> Path:
    """Plot each of ``keys`` (e.g. 'loss', or CAE's 'loss_decode' and 'loss_align') and the learning rate
    against the iteration; write a PNG to ``out``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    iters = [r['iter'] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for key in keys:
        ax.plot(iters, [r.get(key) for r in records], label=key)
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss')
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(iters, [r.get('lr') for r in records], color='tab:gray', ls='--', lw=1, label='lr')
    lr_ax.set_ylabel('learning rate', color='tab:gray')
    lines = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc='upper right', fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)
