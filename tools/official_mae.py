"""Convert checkpoints of the official MAE code; compare our MAE with theirs on the same weights.

The code is mimbench/cli/official_mae.py; installed, it is also the `mimbench-official-mae` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.official_mae import main  # noqa: E402

if __name__ == '__main__':
    main()
