"""Is the CAE encoder's output in the space the regressor predicts into? Decode it directly and see.

The code is mimbench/cli/cae_alignment.py; installed, it is also the `mimbench-cae-alignment` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.cae_alignment import main  # noqa: E402

if __name__ == '__main__':
    main()
