"""Convert checkpoints of the official MAE code; compare our MAE with theirs on the same weights.

The code is mimbench/cli/official_mae.py; installed, it is also the `mimbench-official-mae` command.
"""
from mimbench.cli.official_mae import main

if __name__ == '__main__':
    main()
