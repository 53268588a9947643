"""Shape statistics of block-wise masks: ours, and the authors' generators when their checkouts are given.

The code is mimbench/cli/mask_stats.py; installed, it is also the `mimbench-mask-stats` command.
"""
from mimbench.cli.mask_stats import main

if __name__ == '__main__':
    main()
