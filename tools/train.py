"""Pretrain a model from a config.

The code is mimbench/cli/train.py; installed, it is also the `mimbench-train` command.
"""
from mimbench.cli.train import main

if __name__ == '__main__':
    main()
