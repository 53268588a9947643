"""Plot a training run's loss and learning-rate curves.

The code is mimbench/cli/plot_run.py; installed, it is also the `mimbench-plot-run` command.
"""
from mimbench.cli.plot_run import main

if __name__ == '__main__':
    main()
