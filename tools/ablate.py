"""Regenerate the ablation tables of the MAE and CAE papers: pretrain and evaluate every cell of an axis, then

The code is mimbench/cli/ablate.py; installed, it is also the `mimbench-ablate` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.ablate import main  # noqa: E402

if __name__ == '__main__':
    main()
