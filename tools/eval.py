"""Evaluate a pretrained encoder: linear, attentive or kNN probe on cached frozen features, or fine-tuning.

The code is mimbench/cli/eval.py; installed, it is also the `mimbench-eval` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.eval import main  # noqa: E402

if __name__ == '__main__':
    main()
