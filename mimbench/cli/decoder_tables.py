"""The decoder-depth and decoder-width comparison (MAE Table 1a and 1b) as one markdown file with a plot.

    python tools/decoder_tables.py                      # run the missing cells (micro, CPU), write the tables
    python tools/decoder_tables.py --report             # only rebuild docs/results/decoder.md from the store
    python tools/decoder_tables.py --seeds 2 --dry-run  # list the cells and their estimated time

The same as ``python tools/ablate.py --axis decoder ...``; every other option of tools/ablate.py applies.
"""
from __future__ import annotations

import sys

from mimbench.cli import ablate


def main(argv=None) -> None:
    ablate.main(['--axis', 'decoder', *(sys.argv[1:] if argv is None else argv)])


if __name__ == '__main__':
    main()
