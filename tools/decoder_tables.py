"""The decoder-depth and decoder-width comparison (MAE Table 1a and 1b) as one markdown file with a plot.

The code is mimbench/cli/decoder_tables.py; installed, it is also the `mimbench-decoder-tables` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.decoder_tables import main  # noqa: E402

if __name__ == '__main__':
    main()
