"""Draw what a pretrained model reconstructs: original | masked | reconstruction | reconstruction + visible patches.

The code is mimbench/cli/visualize.py; installed, it is also the `mimbench-visualize` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.visualize import main  # noqa: E402

if __name__ == '__main__':
    main()
