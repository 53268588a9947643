"""Plot a training run's loss and learning-rate curves.

The code is mimbench/cli/plot_run.py; installed, it is also the `mimbench-plot-run` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.plot_run import main  # noqa: E402

if __name__ == '__main__':
    main()
