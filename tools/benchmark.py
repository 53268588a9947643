"""Train-step and forward speed, GFLOPs per image and peak memory of a config's pretraining model, in float32

The code is mimbench/cli/benchmark.py; installed, it is also the `mimbench-benchmark` command.
"""
from mimbench.cli.benchmark import main

if __name__ == '__main__':
    main()
