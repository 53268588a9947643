"""Pretrain a model from a config.

The code is mimbench/cli/train.py; installed, it is also the `mimbench-train` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.train import main  # noqa: E402

if __name__ == '__main__':
    main()
