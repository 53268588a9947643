"""Regenerate the ablation tables of the MAE and CAE papers: pretrain and evaluate every cell of an axis, then

The code is mimbench/cli/ablate.py; installed, it is also the `mimbench-ablate` command.
"""
from mimbench.cli.ablate import main

if __name__ == '__main__':
    main()
