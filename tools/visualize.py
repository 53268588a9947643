"""Draw what a pretrained model reconstructs: original | masked | reconstruction | reconstruction + visible patches.

The code is mimbench/cli/visualize.py; installed, it is also the `mimbench-visualize` command.
"""
from mimbench.cli.visualize import main

if __name__ == '__main__':
    main()
