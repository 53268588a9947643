"""Shape statistics of block-wise masks: ours, and the authors' generators when their checkouts are given.

The code is mimbench/cli/mask_stats.py; installed, it is also the `mimbench-mask-stats` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.mask_stats import main  # noqa: E402

if __name__ == '__main__':
    main()
