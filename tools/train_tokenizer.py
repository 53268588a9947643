"""Train the discrete tokenizer that token targets use, then measure it and write the file they load.

The code is mimbench/cli/train_tokenizer.py; installed, it is also the `mimbench-train-tokenizer` command.
"""
from mimbench.cli.train_tokenizer import main

if __name__ == '__main__':
    main()
