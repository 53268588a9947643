"""Evaluate a pretrained encoder: linear, attentive or kNN probe on cached frozen features, or fine-tuning.

The code is mimbench/cli/eval.py; installed, it is also the `mimbench-eval` command.
"""
from mimbench.cli.eval import main

if __name__ == '__main__':
    main()
