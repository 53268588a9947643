"""Train the discrete tokenizer that token targets use, then measure it and write the file they load.

The code is mimbench/cli/train_tokenizer.py; installed, it is also the `mimbench-train-tokenizer` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.train_tokenizer import main  # noqa: E402

if __name__ == '__main__':
    main()
