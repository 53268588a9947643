"""Plot a training run's loss and learning-rate curves.

    python tools/plot_run.py work_dirs/mae_micro_cifar10 --out docs/results/mae_micro_cifar10_loss.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mimbench.analysis.curves import plot_curves, read_scalars
from mimbench.errors import USER_ERRORS


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    p.add_argument('work_dir')
    p.add_argument('--out', help='PNG path (default: WORK_DIR/loss.png)')
    p.add_argument('--keys', nargs='+', default=['loss'], help='logged values to plot')
    args = p.parse_args(argv)
    try:
        records = read_scalars(args.work_dir)
    except USER_ERRORS as err:  # not a work dir, or nothing logged yet: one line, not a traceback
        sys.exit(f'error: {err}')
    out = plot_curves(records, args.out or Path(args.work_dir) / 'loss.png', title=Path(args.work_dir).name,
                      keys=tuple(args.keys))
    first, last = records[0], records[-1]
    print(f"{len(records)} records, iteration {first['iter']} -> {last['iter']}; "
          + ', '.join(f'{k} {first[k]:.4f} -> {last[k]:.4f}' for k in args.keys) + f'; plot: {out}')


if __name__ == '__main__':
    main()
