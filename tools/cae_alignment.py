"""Is the CAE encoder's output in the space the regressor predicts into? Decode it directly and see.

The code is mimbench/cli/cae_alignment.py; installed, it is also the `mimbench-cae-alignment` command.
"""
from mimbench.cli.cae_alignment import main

if __name__ == '__main__':
    main()
