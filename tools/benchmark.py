"""Train-step and forward speed, GFLOPs per image and peak memory of a config's pretraining model, in float32

The code is mimbench/cli/benchmark.py; installed, it is also the `mimbench-benchmark` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.benchmark import main  # noqa: E402

if __name__ == '__main__':
    main()
